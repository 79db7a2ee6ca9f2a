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
    /// WHIP ingest UDP address (the ICE candidate publishers reach); empty: no WHIP ingest
    /// [default: 127.0.0.1:0].
    #[arg(long, env = "BYOC_GATEWAY_WHIP_UDP_ADDR", value_name = "ADDR")]
    pub whip_udp_addr: Option<String>,
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
    /// Where the registry lives: sled (embedded, one gateway) or etcd (a fleet sharing it)
    /// [default: sled]. The file's registry.backend.
    #[arg(long, env = "BYOC_GATEWAY_REGISTRY_BACKEND", value_name = "sled|etcd")]
    pub registry_backend: Option<String>,
    /// etcd endpoints, comma separated (http://host:port). The file's registry.etcd_endpoints.
    #[arg(long, env = "BYOC_GATEWAY_ETCD_ENDPOINTS", value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd_endpoints: Option<Vec<String>>,
    /// Key prefix of this fleet in etcd [default: /byoc-gateway/]. The file's registry.prefix.
    #[arg(long, env = "BYOC_GATEWAY_REGISTRY_PREFIX", value_name = "PREFIX")]
    pub registry_prefix: Option<String>,
    /// TTL of this replica's membership lease [default: 10s]. The file's registry.lease_ttl.
    #[arg(long, env = "BYOC_GATEWAY_REGISTRY_LEASE_TTL", value_name = "DURATION")]
    pub registry_lease_ttl: Option<String>,
    /// Bound on one registry write to etcd [default: 3s]. The file's registry.request_timeout.
    #[arg(long, env = "BYOC_GATEWAY_REGISTRY_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub registry_request_timeout: Option<String>,
    /// This replica's id in the fleet [default: generated once per data dir]. The file's
    /// registry.replica_id.
    #[arg(long, env = "BYOC_GATEWAY_REPLICA_ID", value_name = "ID")]
    pub replica_id: Option<String>,
    /// CA certificate(s) (PEM) of etcd's server certificates. The file's registry.etcd_ca_file.
    #[arg(long, env = "BYOC_GATEWAY_ETCD_CA_FILE", value_name = "FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd. The file's registry.etcd_cert_file.
    #[arg(long, env = "BYOC_GATEWAY_ETCD_CERT_FILE", value_name = "FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key (PEM) for etcd. The file's registry.etcd_key_file.
    #[arg(long, env = "BYOC_GATEWAY_ETCD_KEY_FILE", value_name = "FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user (with --etcd-password-file). The file's registry.etcd_username.
    #[arg(long, env = "BYOC_GATEWAY_ETCD_USERNAME", value_name = "USER", hide_env_values = true)]
    pub etcd_username: Option<String>,
    /// File holding the etcd user's password. The file's registry.etcd_password_file.
    #[arg(long, env = "BYOC_GATEWAY_ETCD_PASSWORD_FILE", value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// The address clients reach this gateway (in a fleet, this replica) at
    /// (https://gw-1.example): the URLs of the streams it owns point at it, so a load balancer
    /// in front needs no stickiness. The file's streams.public_url.
    #[arg(long, env = "BYOC_GATEWAY_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

impl RunArgs {
    /// Overlays the registry flags on `cfg` (a value that does not parse is left for
    /// validation to report: it is stored as given where the field is text, and a duration
    /// that does not parse makes the whole value invalid below).
    pub(super) fn apply_registry(&self, cfg: &mut super::Config) {
        let r = &mut cfg.registry;
        if let Some(v) = &self.registry_backend {
            r.backend = match v.trim() {
                "etcd" => byoc_actors::registry::Backend::Etcd,
                "sled" => byoc_actors::registry::Backend::Sled,
                other => {
                    r.bad_flag = Some(format!("--registry-backend must be sled or etcd, not '{other}'"));
                    r.backend
                }
            };
        }
        if let Some(v) = &self.etcd_endpoints {
            r.etcd_endpoints = v.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = &self.registry_prefix {
            r.prefix = v.clone();
        }
        for (flag, value, slot) in [
            ("--registry-lease-ttl", &self.registry_lease_ttl, &mut r.lease_ttl),
            ("--registry-request-timeout", &self.registry_request_timeout, &mut r.request_timeout),
        ] {
            if let Some(v) = value {
                match humantime_serde::re::humantime::parse_duration(v.trim()) {
                    Ok(d) => *slot = d,
                    Err(e) => r.bad_flag = Some(format!("{flag} '{v}' is not a duration such as 10s: {e}")),
                }
            }
        }
        if let Some(v) = &self.replica_id {
            r.replica_id = Some(v.clone());
        }
        if let Some(v) = &self.etcd_ca_file {
            r.etcd_ca_file = Some(v.clone());
        }
        if let Some(v) = &self.etcd_cert_file {
            r.etcd_cert_file = Some(v.clone());
        }
        if let Some(v) = &self.etcd_key_file {
            r.etcd_key_file = Some(v.clone());
        }
        if let Some(v) = &self.etcd_username {
            r.etcd_username = Some(v.clone());
        }
        if let Some(v) = &self.etcd_password_file {
            r.etcd_password_file = Some(v.clone());
        }
        if let Some(v) = &self.public_url {
            cfg.streams.public_url = v.trim().to_string();
        }
    }
}
