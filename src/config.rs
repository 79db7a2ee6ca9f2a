//! Configuration: a typed [`Config`] built from defaults, then the TOML file, then
//! environment variables and flags (clap resolves those two), validated as a whole before
//! any port is bound or the store is opened.
//!
//! Unknown keys in the file are errors, so a typo never silently falls back to a default.
//!
//! Validation also unlocks the signing key when one is configured (`[signer]`), so a wrong
//! password or a damaged keystore stops start-up (and `check-config`) like any other
//! configuration error, before a port is bound.
//!
//! - [`args`]: the flags and environment variables of `run` and `check-config`;
//! - [`sections`]: the file's sections and their defaults;
//! - `validate`: checking the whole, parsing addresses, unlocking the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use byoc_actors::breaker::BreakerConfig;
use byoc_actors::capability::Capability;
use byoc_actors::discovery::DiscoverySettings;
use byoc_actors::policy::CapabilityPolicy;
use byoc_actors::protocol::signer::{SharedSigner, SignerError};
use serde::{Deserialize, Serialize};

/// A configuration problem; the message says what and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's words (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The configured signing key could not be unlocked.
    #[error("invalid signing key: {0}")]
    Signer(#[from] SignerError),
}

mod args;
mod live_runner;
mod registry;
mod sections;
mod streams;
mod validate;

pub use args::RunArgs;
pub use live_runner::{LiveRunnerConfig, LiveRunnerValidated, RemoteSigner};
pub use registry::{check_replica_id, RegistryConfig};
pub use sections::{Discovery, History, Limits, Log, Payments, Routing, Runner, SignerConfig, StaticOrchestrator};
pub use streams::{StreamTimeouts, Streams};
use validate::{check_env, Unlock};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Public API listen address.
    pub http_addr: String,
    /// Admin API listen address.
    pub admin_addr: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Admin bearer token (also `BYOC_GATEWAY_ADMIN_TOKEN` / `--admin-token`).
    pub admin_token: Option<String>,
    /// Require the admin token on `/metrics` too (Prometheus `authorization` / bearer).
    pub metrics_require_token: bool,
    /// Most pairs with per-pair series (`byoc_gateway_pair_*`, labelled by orchestrator id) on
    /// `/metrics`: the first in (orchestrator id, capability) order; 0 for none.
    pub metrics_pair_series: usize,
    /// Orchestrators as go-livepeer's `-orchAddr` list.
    pub orch_addr: Vec<String>,
    /// Orchestrators with declared capabilities.
    pub orchestrators: Vec<StaticOrchestrator>,
    /// HTTP workers for the public API (0 = one per core).
    pub workers: usize,
    /// Bound on draining in-flight jobs at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Size limits.
    pub limits: Limits,
    /// Routing knobs.
    pub routing: Routing,
    /// Breaker knobs (all pairs).
    pub breaker: BreakerConfig,
    /// Policy of capabilities without an entry in `capabilities`.
    pub default_policy: CapabilityPolicy,
    /// Per-capability policies; the capabilities named here get pairs at start.
    pub capabilities: BTreeMap<String, CapabilityPolicy>,
    /// The AI-runner paths.
    pub runner: Runner,
    /// Orchestrator discovery.
    pub discovery: Discovery,
    /// Logging.
    pub log: Log,
    /// The status page's plots.
    pub history: History,
    /// Signing key (none: offchain).
    pub signer: SignerConfig,
    /// Spend limits on payments to priced orchestrators (used only with a key).
    pub payments: Payments,
    /// Live streams.
    pub streams: Streams,
    /// Where the registry lives: sled (one gateway) or etcd (a fleet).
    pub registry: RegistryConfig,
    /// Live Runner apps.
    pub live_runner: LiveRunnerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9935".into(),
            admin_addr: "127.0.0.1:5935".into(),
            data_dir: PathBuf::from("./data"),
            admin_token: None,
            metrics_require_token: false,
            metrics_pair_series: 500,
            orch_addr: Vec::new(),
            orchestrators: Vec::new(),
            workers: 0,
            shutdown_grace: Duration::from_secs(20),
            limits: Limits::default(),
            routing: Routing::default(),
            breaker: BreakerConfig::default(),
            default_policy: CapabilityPolicy::default(),
            capabilities: BTreeMap::new(),
            runner: Runner::default(),
            discovery: Discovery::default(),
            log: Log::default(),
            history: History::default(),
            signer: SignerConfig::default(),
            payments: Payments::default(),
            streams: Streams::default(),
            registry: RegistryConfig::default(),
            live_runner: LiveRunnerConfig::default(),
        }
    }
}

/// The checked configuration, with parsed forms of the string fields.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The configuration as given.
    pub config: Config,
    /// Parsed public address.
    pub http_addr: SocketAddr,
    /// Parsed admin address.
    pub admin_addr: SocketAddr,
    /// Static orchestrators: normalised URL, declared capabilities (deduplicated), label.
    pub orchestrators: Vec<byoc_actors::orchestrator::Listed>,
    /// Per-capability policies.
    pub policies: Vec<(Capability, CapabilityPolicy)>,
    /// Every AI-runner path and the capability it routes to (aliases applied).
    pub runner_routes: Vec<(&'static str, Capability)>,
    /// The discovery webhook, when one is configured.
    pub discovery: Option<DiscoverySettings>,
    /// The flags and env it was loaded from (what a reload reads again).
    pub source: RunArgs,
    /// Signs the token credential and jobs: the unlocked key, or [`Offchain`].
    pub signer: SharedSigner,
    /// The spend limits of payments.
    pub payment_limits: byoc_actors::payment::Limits,
    /// How streams run.
    pub stream_settings: byoc_actors::stream::StreamSettings,
    /// The RTMP ingest's address (`streams.rtmp_addr`), if it is on.
    pub rtmp_addr: Option<SocketAddr>,
    /// The etcd registry's settings (`None`: sled). The replica id is empty until resolved
    /// against the data dir at start, unless configured.
    pub etcd: Option<byoc_actors::registry::etcd::EtcdSettings>,
    /// WHIP ingest's UDP address (`streams.whip_udp_addr`), if it is on.
    pub whip_addr: Option<SocketAddr>,
    /// Live Runner apps, unless switched off.
    pub live_runner: Option<LiveRunnerValidated>,
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
    }

    /// Parses TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Builds the configuration from flags/env (already merged by clap) over the file over
    /// the defaults, and validates it.
    pub fn load(args: &RunArgs) -> Result<Validated, ConfigError> {
        Self::load_with(args, Unlock::Yes)
    }

    /// Like [`Config::load`] but without unlocking the signing key (the signer is
    /// [`Offchain`]), for reloads: the key is not reloadable, and unlocking a standard keystore
    /// costs about a second and 256 MiB of scrypt, which a SIGHUP or an admin call should not.
    pub fn load_for_reload(args: &RunArgs) -> Result<Validated, ConfigError> {
        Self::load_with(args, Unlock::No)
    }

    fn load_with(args: &RunArgs, unlock: Unlock) -> Result<Validated, ConfigError> {
        check_env(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))?;
        let mut cfg = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        cfg.apply(args);
        let mut v = cfg.validate_with(unlock)?;
        v.source = args.clone();
        Ok(v)
    }

    /// The settings that differ between `self` (running) and `new` and that a reload does not
    /// apply (everything but the orchestrators and the per-capability policies): dotted keys
    /// (`limits.max_body_bytes`, `admin_token`), never their values.
    pub fn restart_required(&self, new: &Config) -> Vec<String> {
        const LIVE: [&str; 3] = ["orch_addr", "orchestrators", "capabilities"];
        let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
            (serde_json::to_value(self), serde_json::to_value(new))
        else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for (key, value) in &old {
            let other = new.get(key).unwrap_or(&serde_json::Value::Null);
            if LIVE.contains(&key.as_str()) || other == value {
                continue;
            }
            match (value, other) {
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                    keys.extend(names.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| format!("{key}.{k}")));
                }
                _ => keys.push(key.clone()),
            }
        }
        keys
    }

    /// Overlays the flags (and env values) that were given.
    pub fn apply(&mut self, args: &RunArgs) {
        if let Some(v) = &args.http_addr {
            self.http_addr = v.clone();
        }
        if let Some(v) = &args.admin_addr {
            self.admin_addr = v.clone();
        }
        if let Some(v) = &args.rtmp_addr {
            self.streams.rtmp_addr = v.clone();
        }
        if let Some(v) = &args.whip_udp_addr {
            self.streams.whip_udp_addr = v.clone();
        }
        if let Some(v) = &args.data_dir {
            self.data_dir = v.clone();
        }
        if let Some(v) = &args.orch_addr {
            self.orch_addr = v.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = &args.orch_webhook_url {
            // An empty value (as go-livepeer's default "") means no webhook, so an env var
            // can switch discovery off over a file that sets it.
            self.discovery.webhook_url = Some(v.trim().to_string()).filter(|s| !s.is_empty());
        }
        if let Some(v) = &args.admin_token {
            self.admin_token = Some(v.clone());
        }
        if let Some(v) = &args.log_format {
            self.log.format = v.clone();
        }
        if let Some(v) = &args.eth_keystore_path {
            self.signer.keystore = Some(v.clone());
        }
        if let Some(v) = &args.eth_password {
            self.signer.password_file = Some(v.clone());
        }
        args.apply_registry(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let v = Config::default().validate().expect("valid");
        assert_eq!(v.http_addr.to_string(), "127.0.0.1:9935");
        assert_eq!(v.admin_addr.to_string(), "127.0.0.1:5935");
        assert_eq!(v.config.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let mut cfg =
            Config::from_toml("http_addr = \"127.0.0.1:1000\"\nadmin_addr = \"127.0.0.1:1001\"\n").expect("toml");
        assert_eq!(cfg.http_addr, "127.0.0.1:1000");
        cfg.apply(&RunArgs { http_addr: Some("127.0.0.1:2000".into()), ..Default::default() });
        let v = cfg.validate().expect("valid");
        assert_eq!(v.http_addr.port(), 2000);
        assert_eq!(v.admin_addr.port(), 1001);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::from_toml("htp_addr = \"x\"").is_err());
        assert!(Config::from_toml("[routing]\ntoken_refresh = \"ten\"").is_err());
        let bad = Config { http_addr: "nope".into(), ..Default::default() };
        assert!(matches!(bad.validate(), Err(ConfigError::Invalid(m)) if m.contains("http_addr")));
    }

    #[test]
    fn whip_listens_on_loopback_by_default_and_needs_an_address_publishers_reach() {
        let v = Config::default().validate().expect("valid");
        assert_eq!(v.whip_addr.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:0"));
        let mut off = Config::default();
        off.apply(&RunArgs { whip_udp_addr: Some(String::new()), ..Default::default() });
        assert_eq!(off.validate().expect("valid").whip_addr, None);
        let mut any = Config::default();
        any.streams.whip_udp_addr = "0.0.0.0:8189".into();
        assert!(matches!(any.validate(), Err(ConfigError::Invalid(m)) if m.contains("streams.whip_udp_addr")));
    }

    #[test]
    fn public_admin_without_token_is_refused() {
        let cfg = Config { admin_addr: "0.0.0.0:5935".into(), ..Default::default() };
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(m)) if m.contains("token")));
        let ok = Config { admin_addr: "0.0.0.0:5935".into(), admin_token: Some("t".into()), ..Default::default() };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn orchestrators_are_normalised_and_merged() {
        let mut cfg = Config::from_toml(
            "orch_addr = [\"1.2.3.4:8935\"]\n[[orchestrators]]\nurl = \"https://1.2.3.4:8935\"\ncapabilities = [\"depth\", \"depth\"]\n",
        )
        .expect("toml");
        cfg.apply(&RunArgs::default());
        let v = cfg.validate().expect("valid");
        assert_eq!(v.orchestrators.len(), 1);
        assert_eq!(v.orchestrators[0].url, "https://1.2.3.4:8935");
        assert_eq!(v.orchestrators[0].capabilities.len(), 1);
        let bad = Config { orch_addr: vec!["ftp://x:1".into()], ..Default::default() };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn orchestrators_may_carry_labels_from_flags_and_the_file() {
        let mut cfg = Config::from_toml(
            "orch_addr = [\"fast=1.2.3.4:8935\"]\n[[orchestrators]]\nurl = \"http://5.6.7.8:1\"\nlabel = \"slow box\"\n",
        )
        .expect("toml");
        cfg.apply(&RunArgs::default());
        let v = cfg.clone().validate().expect("valid");
        let labels: Vec<(&str, Option<&str>)> =
            v.orchestrators.iter().map(|l| (l.url.as_str(), l.label.as_deref())).collect();
        assert_eq!(labels, vec![("https://1.2.3.4:8935", Some("fast")), ("http://5.6.7.8:1", Some("slow box"))]);
        // The flag, comma separated as clap splits it, overrides the file's list.
        let args = RunArgs { orch_addr: Some(vec!["a=http://h:1".into(), "http://g:1".into()]), ..Default::default() };
        cfg.apply(&args);
        let v = cfg.validate().expect("valid");
        assert_eq!(v.orchestrators[0].label.as_deref(), Some("a"));
        assert_eq!(v.orchestrators[1].label, None);
        // Bad labels, and two labels for one orchestrator, are configuration errors.
        for (orch_addr, toml) in [
            (vec!["=http://h:1"], ""),
            (vec!["a\u{1b}b=http://h:1"], ""),
            (vec!["a=http://h:1"], "[[orchestrators]]\nurl = \"http://h:1\"\nlabel = \"b\"\n"),
            (vec![], "[[orchestrators]]\nurl = \"http://h:1\"\nlabel = \"x,y\"\n"),
        ] {
            let mut cfg = Config::from_toml(toml).expect("toml");
            cfg.orch_addr = orch_addr.iter().map(|s| s.to_string()).collect();
            let err = cfg.validate().expect_err("invalid");
            assert!(matches!(&err, ConfigError::Invalid(m) if m.contains("label")), "{orch_addr:?}: {err}");
        }
    }

    #[test]
    fn the_history_is_bounded() {
        let ok = Config::from_toml("[history]\nperiod = \"200ms\"\nwindow = \"20s\"\nmax_pairs = 10\n").expect("toml");
        assert_eq!(ok.validate().expect("valid").config.history.settings().samples(), 100);
        for bad in [
            "[history]\nperiod = \"10ms\"\n",
            "[history]\nperiod = \"10s\"\nwindow = \"10s\"\n",
            "[history]\nperiod = \"1s\"\nwindow = \"2h\"\n",
            "[history]\nmax_pairs = 1000000\n",
        ] {
            let err = Config::from_toml(bad).expect("toml").validate().expect_err(bad);
            assert!(matches!(&err, ConfigError::Invalid(m) if m.contains("history.")), "{bad}: {err}");
        }
    }

    #[test]
    fn capability_policies_are_validated() {
        let cfg = Config::from_toml("[capabilities.\"bad name\"]\nprofile = \"chained\"\n").expect("toml");
        assert!(cfg.validate().is_err());
        let cfg = Config::from_toml("[capabilities.depth]\nmax_attempts = 0\n").expect("toml");
        assert!(cfg.validate().is_err());
        let cfg = Config::from_toml("[capabilities.depth]\nprofile = \"per-frame\"\nretry_timeout = \"12s\"\n")
            .expect("toml");
        assert_eq!(cfg.validate().expect("valid").policies.len(), 1);
    }

    #[test]
    fn capability_breaker_overrides_are_checked_against_the_global_table() {
        let cfg =
            Config::from_toml("[breaker]\nwindow = 10\n[capabilities.depth.breaker]\nmin_calls = 15\n").expect("toml");
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(m)) if m.contains("min_calls")));
        let cfg =
            Config::from_toml("[breaker]\nwindow = 30\n[capabilities.depth.breaker]\nmin_calls = 15\n").expect("toml");
        assert!(cfg.validate().is_ok());
    }

    fn keystore_fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/tests/fixtures/keystore").join(name)
    }

    #[test]
    fn without_a_key_the_gateway_is_offchain() {
        let v = Config::default().validate().expect("valid");
        assert_eq!(v.signer.scheme(), "offchain");
        assert_eq!(v.signer.sign(b"x"), "");
    }

    #[test]
    fn a_configured_key_is_unlocked_at_validation() {
        let mut cfg = Config::default();
        cfg.apply(&RunArgs {
            eth_keystore_path: Some(keystore_fixture("scrypt.json")),
            eth_password: Some(keystore_fixture("password.txt")),
            ..Default::default()
        });
        let v = cfg.validate().expect("valid");
        assert_eq!(v.signer.scheme(), "v0");
        assert_eq!(v.signer.address(), "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
        assert!(!format!("{v:?}").contains("4c0883a6"), "no key material in Debug");
    }

    #[test]
    fn keystore_and_password_go_together_and_only_v0_exists() {
        let only_key =
            Config::from_toml(&format!("[signer]\nkeystore = {:?}\n", keystore_fixture("scrypt.json"))).expect("toml");
        assert!(matches!(only_key.validate(), Err(ConfigError::Invalid(m)) if m.contains("both")));
        let only_pw = Config::from_toml("[signer]\npassword_file = \"/x\"\n").expect("toml");
        assert!(matches!(only_pw.validate(), Err(ConfigError::Invalid(m)) if m.contains("both")));
        let v1 = Config::from_toml("[signer]\nscheme = \"v1\"\n").expect("toml");
        assert!(
            matches!(v1.validate(), Err(ConfigError::Invalid(m)) if m.contains("signer.scheme") && m.contains("v0"))
        );
        assert!(Config::from_toml("[signer]\nkeystor = \"/x\"\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn a_wrong_password_is_a_config_error_but_not_on_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "wrong\n").expect("write");
        let args = RunArgs {
            eth_keystore_path: Some(keystore_fixture("pbkdf2.json")),
            eth_password: Some(pw),
            ..Default::default()
        };
        let err = Config::load(&args).expect_err("wrong password");
        assert!(matches!(err, ConfigError::Signer(_)), "{err:?}");
        assert!(err.to_string().contains("MAC mismatch"), "{err}");
        // A reload re-reads orchestrators and policies only; the key is not reloadable.
        assert_eq!(Config::load_for_reload(&args).expect("reload skips the key").signer.scheme(), "offchain");
    }

    #[test]
    fn runner_aliases_rename_known_paths_only() {
        let v = Config::default().validate().expect("valid");
        assert_eq!(v.runner_routes.len(), crate::http::runner::PIPELINES.len());
        assert!(v.runner_routes.iter().all(|(p, c)| *p == c.as_str()), "no alias: the path's own name");
        let cfg = Config::from_toml("[runner.aliases]\ntext-to-image = \"sdxl-turbo\"\n").expect("toml");
        let v = cfg.validate().expect("valid");
        let route = |p: &str| v.runner_routes.iter().find(|(q, _)| *q == p).map(|(_, c)| c.to_string());
        assert_eq!(route("text-to-image").as_deref(), Some("sdxl-turbo"));
        assert_eq!(route("llm").as_deref(), Some("llm"));
        let unknown = Config::from_toml("[runner.aliases]\ntext-to-pizza = \"x\"\n").expect("toml");
        assert!(matches!(unknown.validate(), Err(ConfigError::Invalid(m)) if m.contains("text-to-pizza")));
        let bad_name = Config::from_toml("[runner.aliases]\nllm = \"bad name\"\n").expect("toml");
        assert!(matches!(bad_name.validate(), Err(ConfigError::Invalid(m)) if m.contains("runner.aliases.llm")));
        let zero = Config::from_toml("[runner]\ntimeout_seconds = 0\n").expect("toml");
        assert!(matches!(zero.validate(), Err(ConfigError::Invalid(m)) if m.contains("runner.timeout_seconds")));
    }

    #[test]
    fn the_webhook_url_comes_from_file_env_or_flag_and_is_checked() {
        let mut cfg = Config::from_toml(
            "[discovery]\nwebhook_url = \"http://127.0.0.1:8000/orchs?k=v\"\nwebhook_refresh = \"200ms\"\n",
        )
        .expect("toml");
        let v = cfg.clone().validate().expect("valid");
        let d = v.discovery.expect("configured");
        assert_eq!(d.webhook_url, "http://127.0.0.1:8000/orchs?k=v");
        assert_eq!((d.refresh, d.timeout), (Duration::from_millis(200), Duration::from_secs(3)));
        // The flag (or env) wins; an empty one switches discovery off.
        cfg.apply(&RunArgs { orch_webhook_url: Some(String::new()), ..Default::default() });
        assert!(cfg.clone().validate().expect("valid").discovery.is_none());
        cfg.apply(&RunArgs { orch_webhook_url: Some("https://hook.example".into()), ..Default::default() });
        assert_eq!(cfg.validate().expect("valid").discovery.expect("on").webhook_url, "https://hook.example/");
        assert!(Config::default().validate().expect("valid").discovery.is_none(), "off by default");

        for (toml, needle) in [
            ("[discovery]\nwebhook_url = \"ftp://x/list\"\n", "scheme"),
            ("[discovery]\nwebhook_url = \"hook.example/list\"\n", "http://"),
            ("[discovery]\nwebhook_url = \"http://x\"\nwebhook_timeout = \"0s\"\n", "webhook_timeout"),
            ("[discovery]\nwebhook_url = \"http://x\"\nwebhook_refresh = \"0s\"\n", "webhook_refresh"),
            ("[discovery]\nwebhook_url = \"http://x\"\nwebhook_headers = { Host = \"a\" }\n", "webhook_headers"),
            (
                "[discovery]\nwebhook_url = \"http://x\"\nwebhook_headers = { \"bad name\" = \"a\" }\n",
                "webhook_headers",
            ),
            ("[discovery]\nwebhook_url = \"http://x\"\nwebhook_headers = { X = \"a\\nb\" }\n", "webhook_headers"),
        ] {
            let cfg = Config::from_toml(toml).expect("toml");
            match cfg.validate() {
                Err(ConfigError::Invalid(m)) => assert!(m.contains(needle) && m.contains("discovery."), "{m}"),
                other => panic!("{toml}: expected invalid, got {other:?}"),
            }
        }
        assert!(Config::from_toml("[discovery]\nwebhook_urll = \"http://x\"\n").is_err(), "typos are refused");
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.toml");
        let cfg = Config::from_file(&path).expect("example parses");
        cfg.validate().expect("example is valid");
    }
}
