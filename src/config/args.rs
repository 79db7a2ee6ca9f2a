//! The flags of `run` and `check-config`, each also read from a `BYOC_GATEWAY_*` environment
//! variable (clap merges the two; the file is read under them).

use std::path::PathBuf;

use clap::Args;

/// Flags of `run` and `check-config`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long, env = "BYOC_GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Public API listen address [default: 127.0.0.1:9935].
    #[arg(long, env = "BYOC_GATEWAY_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// Admin API listen address [default: 127.0.0.1:5935].
    #[arg(long, env = "BYOC_GATEWAY_ADMIN_ADDR", value_name = "ADDR")]
    pub admin_addr: Option<String>,
    /// RTMP ingest listen address; empty: no RTMP ingest [default: 127.0.0.1:1935].
    #[arg(long, env = "BYOC_GATEWAY_RTMP_ADDR", value_name = "ADDR")]
    pub rtmp_addr: Option<String>,
    /// Data directory (sled store) [default: ./data].
    #[arg(long, env = "BYOC_GATEWAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Orchestrators, comma separated, like go-livepeer's -orchAddr (host:port means https);
    /// `label=URL` also names one for operators (`fast=http://10.0.0.5:8935`).
    #[arg(long, env = "BYOC_GATEWAY_ORCH_ADDR", value_name = "[LABEL=]URL[,...]", value_delimiter = ',')]
    pub orch_addr: Option<Vec<String>>,
    /// Discovery webhook, like go-livepeer's -orchWebhookUrl: GET answers
    /// [{"address":"https://host:port","score":1.0},...]; fetched at start and every minute.
    #[arg(long, env = "BYOC_GATEWAY_ORCH_WEBHOOK_URL", value_name = "URL")]
    pub orch_webhook_url: Option<String>,
    /// Bearer token required on the admin API.
    #[arg(long, env = "BYOC_GATEWAY_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "BYOC_GATEWAY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Keystore v3 JSON file of the gateway's Ethereum key, like go-livepeer's
    /// -ethKeystorePath (the key file itself). Needs --eth-password. Without it: offchain.
    #[arg(long, env = "BYOC_GATEWAY_ETH_KEYSTORE_PATH", value_name = "FILE")]
    pub eth_keystore_path: Option<PathBuf>,
    /// File holding the keystore's password (one trailing newline is ignored). Unlike
    /// go-livepeer's -ethPassword, a literal password is not accepted: only a file path.
    #[arg(long, env = "BYOC_GATEWAY_ETH_PASSWORD", value_name = "FILE")]
    pub eth_password: Option<PathBuf>,
}
