//! Configuration: a typed [`Config`] built from defaults, then the TOML file, then
//! environment variables and flags (clap resolves those two), validated as a whole before
//! any port is bound or the store is opened.
//!
//! Unknown keys in the file are errors, so a typo never silently falls back to a default.
//!
//! Validation also unlocks the signing key when one is configured (`[signer]`), so a wrong
//! password or a damaged keystore stops start-up (and `check-config`) like any other
//! configuration error, before a port is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use byoc_actors::breaker::BreakerConfig;
use byoc_actors::capability::Capability;
use byoc_actors::discovery::webhook::{check_webhook_url, WebhookHeaders};
use byoc_actors::discovery::DiscoverySettings;
use byoc_actors::orchestrator::normalize_url;
use byoc_actors::policy::CapabilityPolicy;
use byoc_actors::protocol::signer::{self, Offchain, Scheme, SharedSigner, SignerError};
use serde::{Deserialize, Serialize};

use crate::cli::RunArgs;

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

/// An orchestrator listed in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticOrchestrator {
    /// URL or host:port.
    pub url: String,
    /// Capabilities declared for it (pairs are created at start).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest job body accepted from a client (it is buffered for failover).
    pub max_body_bytes: usize,
    /// Largest answer accepted from an orchestrator.
    pub max_response_bytes: usize,
    /// Largest admin API JSON body.
    pub admin_body_bytes: usize,
    /// A client must send its request headers within this time (slow-client bound).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A client must send its whole body within this time (slow-client bound); 408 otherwise.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Jobs in flight at once, gateway-wide (waiting in a queue included); a job takes its
    /// place once its body is read, and past the limit it gets an immediate 503 `overloaded`
    /// (with `Retry-After: 1`).
    pub max_inflight_jobs: usize,
    /// Connections each listener queues before accepting them (the kernel caps it at
    /// `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Bytes of job bodies the gateway holds at once (read, waiting in a queue or being sent);
    /// past it a job gets a fast 503 `body-budget-exhausted`. At least `max_body_bytes`.
    pub body_budget_bytes: usize,
    /// Jobs that may wait in one capability's queue for a free slot when every orchestrator is
    /// at its concurrency limit (a capability's `queue_depth` overrides it; 0: no queue, a
    /// full pool answers 503 at once).
    pub queue_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_response_bytes: 64 << 20,
            admin_body_bytes: 64 << 10,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(30),
            max_inflight_jobs: 4096,
            body_budget_bytes: 256 << 20,
            listen_backlog: 4096,
            queue_depth: byoc_actors::policy::DEFAULT_QUEUE_DEPTH,
        }
    }
}

/// Routing and upstream knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Token refresh period per pair (jittered).
    #[serde(with = "humantime_serde")]
    pub token_refresh: Duration,
    /// Token refresh period while the orchestrator reports no free slot, and the first retry
    /// after a failed probe.
    #[serde(with = "humantime_serde")]
    pub token_retry: Duration,
    /// Failed probes in a row back off, doubling from `token_retry`, up to this.
    #[serde(with = "humantime_serde")]
    pub token_retry_max: Duration,
    /// Token probes a second spent discovering capability names no orchestrator is known to
    /// offer (each such name probes every orchestrator once); past it such jobs get a 503.
    pub discovery_probes_per_sec: u32,
    /// Bound on one token probe.
    #[serde(with = "humantime_serde")]
    pub token_timeout: Duration,
    /// How long the first request for a capability nobody has offered yet waits for probes.
    #[serde(with = "humantime_serde")]
    pub probe_wait: Duration,
    /// Verify orchestrator TLS certificates (they are usually self-signed: off).
    pub tls_verify: bool,
    /// Bound on connect plus TLS handshake.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Upstream connections per HTTP worker.
    pub max_connections: usize,
    /// Bound on waiting for an actor's answer on the request path.
    #[serde(with = "humantime_serde")]
    pub mailbox_timeout: Duration,
    /// How often dirty pair scores are written to the store.
    #[serde(with = "humantime_serde")]
    pub flush_every: Duration,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            token_refresh: Duration::from_secs(10),
            token_retry: Duration::from_secs(1),
            token_retry_max: Duration::from_secs(30),
            discovery_probes_per_sec: 200,
            token_timeout: Duration::from_secs(1),
            probe_wait: Duration::from_millis(1500),
            tls_verify: false,
            connect_timeout: Duration::from_secs(2),
            max_connections: 4096,
            mailbox_timeout: Duration::from_secs(2),
            flush_every: Duration::from_secs(5),
        }
    }
}

/// The AI-runner paths (`POST /text-to-image`, ...): see [`crate::http::runner`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runner {
    /// `timeout_seconds` of the jobs built for these paths (their clients send no header).
    pub timeout_seconds: u64,
    /// Runner path (without `/`) -> capability it routes to, for paths whose capability has
    /// another name (`text-to-image = "sdxl-turbo"`). Paths not listed route to the
    /// capability of their own name. Keys must be runner paths: the aliases rename, they do
    /// not add routes.
    pub aliases: BTreeMap<String, String>,
}

impl Default for Runner {
    fn default() -> Self {
        Self { timeout_seconds: crate::http::runner::DEFAULT_TIMEOUT_SECONDS, aliases: BTreeMap::new() }
    }
}

/// Orchestrator discovery (go-livepeer's `-orchWebhookUrl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Discovery {
    /// Webhook answering `GET` with `[{"address": "https://host:port", "score": 1.0}, ...]`;
    /// also `--orch-webhook-url` / `BYOC_GATEWAY_ORCH_WEBHOOK_URL`. Unset: no discovery.
    pub webhook_url: Option<String>,
    /// Period between fetches.
    #[serde(with = "humantime_serde")]
    pub webhook_refresh: Duration,
    /// Bound on one fetch, body included.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Headers sent with every fetch, e.g. `{ Authorization = "Bearer ..." }` for a private
    /// registry. File only (no flag or environment variable, so they stay out of process
    /// listings); their values are never logged or shown by the admin API.
    pub webhook_headers: BTreeMap<String, String>,
}

impl Default for Discovery {
    fn default() -> Self {
        // go-livepeer's values: refreshed every minute, 3 s timeout.
        Self {
            webhook_url: None,
            webhook_refresh: Duration::from_secs(60),
            webhook_timeout: Duration::from_secs(3),
            webhook_headers: BTreeMap::new(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    /// Default filter when `RUST_LOG` is unset (tracing-subscriber EnvFilter syntax).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self { format: "text".into(), level: "info".into() }
    }
}

/// The gateway's Ethereum identity (go-livepeer `-ethKeystorePath` / `-ethPassword`). Without
/// a key the gateway runs offchain: zero address, empty signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerConfig {
    /// Signing scheme the orchestrators verify: only `v0` (go-livepeer master) exists.
    pub scheme: String,
    /// Keystore v3 JSON file holding the key (the file itself, not its directory).
    pub keystore: Option<PathBuf>,
    /// File whose contents (less one trailing newline) are the keystore's password.
    pub password_file: Option<PathBuf>,
}

impl Default for SignerConfig {
    fn default() -> Self {
        Self { scheme: "v0".into(), keystore: None, password_file: None }
    }
}

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
    /// Signing key (none: offchain).
    pub signer: SignerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9935".into(),
            admin_addr: "127.0.0.1:5935".into(),
            data_dir: PathBuf::from("./data"),
            admin_token: None,
            metrics_require_token: false,
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
            signer: SignerConfig::default(),
        }
    }
}

/// Refuses an environment variable named `BYOC_GATEWAY_*` that no flag reads: a misspelt one
/// would otherwise be ignored without a word, as an unknown key in the file is not.
fn check_env(names: impl Iterator<Item = String>) -> Result<(), ConfigError> {
    use clap::Args as _;
    let cmd = RunArgs::augment_args(clap::Command::new("run"));
    let known: Vec<String> =
        cmd.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
    let mut unknown: Vec<String> = names.filter(|k| k.starts_with("BYOC_GATEWAY_") && !known.contains(k)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(ConfigError::Invalid(format!(
        "unknown environment variable(s) {}: byoc-gateway reads only {} (everything else is in the config file)",
        unknown.join(", "),
        known.join(", ")
    )))
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
    /// Static orchestrators: normalised URL and declared capabilities (deduplicated).
    pub orchestrators: Vec<(String, Vec<Capability>)>,
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
    }

    /// Checks every value, derives the parsed forms and unlocks the signing key if one is
    /// configured.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        self.validate_with(Unlock::Yes)
    }

    fn validate_with(self, unlock: Unlock) -> Result<Validated, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let http_addr: SocketAddr = self
            .http_addr
            .parse()
            .map_err(|e| invalid(format!("http_addr '{}' is not an IP:port address: {e}", self.http_addr)))?;
        let admin_addr: SocketAddr = self
            .admin_addr
            .parse()
            .map_err(|e| invalid(format!("admin_addr '{}' is not an IP:port address: {e}", self.admin_addr)))?;
        if self.admin_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid("admin_token is set but empty".into()));
        }
        if !admin_addr.ip().is_loopback() && self.admin_token.is_none() {
            return Err(invalid(format!(
                "admin_addr {admin_addr} is not a loopback address and no admin token is set; \
                 set --admin-token or BYOC_GATEWAY_ADMIN_TOKEN, or bind the admin API to 127.0.0.1"
            )));
        }
        if http_addr == admin_addr && http_addr.port() != 0 {
            return Err(invalid(format!("http_addr and admin_addr are both {http_addr}")));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(format!("log.format must be 'text' or 'json', not '{}'", self.log.format)));
        }
        let l = &self.limits;
        if l.max_body_bytes == 0
            || l.max_response_bytes == 0
            || l.admin_body_bytes == 0
            || l.header_read_timeout.is_zero()
            || l.body_read_timeout.is_zero()
            || l.max_inflight_jobs == 0
            || l.listen_backlog == 0
        {
            return Err(invalid("limits must be positive".into()));
        }
        if l.body_budget_bytes < l.max_body_bytes {
            return Err(invalid(format!(
                "limits.body_budget_bytes ({}) must be at least limits.max_body_bytes ({}): a body of the largest size could never be accepted",
                l.body_budget_bytes, l.max_body_bytes
            )));
        }
        if l.queue_depth > byoc_actors::policy::MAX_QUEUE_DEPTH {
            return Err(invalid(format!(
                "limits.queue_depth must be at most {}",
                byoc_actors::policy::MAX_QUEUE_DEPTH
            )));
        }
        let r = &self.routing;
        if r.discovery_probes_per_sec == 0 {
            return Err(invalid("routing.discovery_probes_per_sec must be at least 1".into()));
        }
        for (name, d) in [
            ("routing.token_refresh", r.token_refresh),
            ("routing.token_retry", r.token_retry),
            ("routing.token_retry_max", r.token_retry_max),
            ("routing.token_timeout", r.token_timeout),
            ("routing.probe_wait", r.probe_wait),
            ("routing.connect_timeout", r.connect_timeout),
            ("routing.mailbox_timeout", r.mailbox_timeout),
            ("routing.flush_every", r.flush_every),
        ] {
            if d.is_zero() {
                return Err(invalid(format!("{name} must be positive")));
            }
        }
        self.breaker.validate().map_err(invalid)?;
        self.default_policy.validate().map_err(|e| invalid(format!("default_policy: {e}")))?;

        let mut policies = Vec::new();
        for (name, policy) in &self.capabilities {
            let cap = Capability::new(name).map_err(|e| invalid(format!("capabilities.{name}: {e}")))?;
            policy.validate_with(&self.breaker).map_err(|e| invalid(format!("capabilities.{name}: {e}")))?;
            policies.push((cap, policy.clone()));
        }

        let mut orchestrators: Vec<(String, Vec<Capability>)> = Vec::new();
        let listed = self
            .orch_addr
            .iter()
            .map(|u| (u.as_str(), &[][..]))
            .chain(self.orchestrators.iter().map(|o| (o.url.as_str(), o.capabilities.as_slice())));
        for (raw, caps) in listed {
            let url = normalize_url(raw).map_err(|e| invalid(format!("orchestrator: {e}")))?;
            let mut parsed = Vec::new();
            for c in caps {
                let cap =
                    Capability::new(c).map_err(|e| invalid(format!("orchestrator {url} capability '{c}': {e}")))?;
                if !parsed.contains(&cap) {
                    parsed.push(cap);
                }
            }
            match orchestrators.iter_mut().find(|(u, _)| *u == url) {
                Some((_, existing)) => {
                    for cap in parsed {
                        if !existing.contains(&cap) {
                            existing.push(cap);
                        }
                    }
                }
                None => orchestrators.push((url, parsed)),
            }
        }
        if self.metrics_require_token && self.admin_token.is_none() {
            return Err(invalid("metrics_require_token is set but no admin token is configured".into()));
        }
        let d = &self.discovery;
        let discovery = match &d.webhook_url {
            None => None,
            Some(raw) => {
                let webhook_url = check_webhook_url(raw).map_err(|e| invalid(format!("discovery.webhook_url: {e}")))?;
                for (name, v) in
                    [("discovery.webhook_refresh", d.webhook_refresh), ("discovery.webhook_timeout", d.webhook_timeout)]
                {
                    if v.is_zero() {
                        return Err(invalid(format!("{name} must be positive")));
                    }
                }
                let headers = WebhookHeaders::new(d.webhook_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(|e| invalid(format!("discovery.webhook_headers: {e}")))?;
                Some(DiscoverySettings { webhook_url, refresh: d.webhook_refresh, timeout: d.webhook_timeout, headers })
            }
        };
        let runner_routes = self.runner.routes().map_err(invalid)?;
        // Checked last: unlocking is the slow part, and a typo elsewhere should not wait for it.
        let signer = self.signer.unlock(unlock)?;
        Ok(Validated {
            config: self,
            http_addr,
            admin_addr,
            orchestrators,
            policies,
            runner_routes,
            discovery,
            source: RunArgs::default(),
            signer,
        })
    }
}

impl Runner {
    /// Checks the timeout and the aliases; returns every runner path with its capability.
    fn routes(&self) -> Result<Vec<(&'static str, Capability)>, String> {
        use crate::http::runner::PIPELINES;
        use byoc_actors::protocol::header::MAX_TIMEOUT_SECONDS;
        if !(1..=MAX_TIMEOUT_SECONDS).contains(&self.timeout_seconds) {
            return Err(format!(
                "runner.timeout_seconds must be 1 to {MAX_TIMEOUT_SECONDS}, not {}",
                self.timeout_seconds
            ));
        }
        if let Some(key) = self.aliases.keys().find(|k| !PIPELINES.contains(&k.as_str())) {
            return Err(format!("runner.aliases.{key}: not an AI-runner path (one of {})", PIPELINES.join(", ")));
        }
        PIPELINES
            .iter()
            .map(|&p| {
                let name = self.aliases.get(p).map_or(p, String::as_str);
                Capability::new(name).map(|c| (p, c)).map_err(|e| format!("runner.aliases.{p} = '{name}': {e}"))
            })
            .collect()
    }
}

/// Whether validation unlocks the signing key (see [`Config::load_for_reload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unlock {
    Yes,
    No,
}

impl SignerConfig {
    /// Checks the section and, when `unlock` says so and a key is configured, unlocks it.
    fn unlock(&self, unlock: Unlock) -> Result<SharedSigner, ConfigError> {
        let scheme: Scheme = self.scheme.parse().map_err(|e| ConfigError::Invalid(format!("signer.scheme: {e}")))?;
        match (&self.keystore, &self.password_file) {
            (None, None) => Ok(Arc::new(Offchain)),
            (Some(keystore), Some(password_file)) => match unlock {
                Unlock::Yes => Ok(signer::load(scheme, keystore, password_file)?),
                Unlock::No => Ok(Arc::new(Offchain)),
            },
            (Some(_), None) | (None, Some(_)) => Err(ConfigError::Invalid(
                "signer.keystore and signer.password_file go together: set both (--eth-keystore-path and \
                 --eth-password) or neither (offchain)"
                    .into(),
            )),
        }
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
        assert_eq!(v.orchestrators[0].0, "https://1.2.3.4:8935");
        assert_eq!(v.orchestrators[0].1.len(), 1);
        let bad = Config { orch_addr: vec!["ftp://x:1".into()], ..Default::default() };
        assert!(bad.validate().is_err());
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
