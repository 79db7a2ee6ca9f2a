//! Checking a whole configuration: addresses, limits, orchestrators, policies, discovery, the
//! runner's routes and the signing key (unlocked here, so a wrong password stops start-up).

use std::net::SocketAddr;
use std::sync::Arc;

use byoc_actors::capability::Capability;
use byoc_actors::discovery::webhook::{check_webhook_url, WebhookHeaders};
use byoc_actors::discovery::DiscoverySettings;
use byoc_actors::orchestrator::normalize_url;
use byoc_actors::protocol::signer::{self, Offchain, Scheme, SharedSigner};

use super::{Config, ConfigError, RunArgs, Runner, SignerConfig, Validated};

/// Refuses an environment variable named `BYOC_GATEWAY_*` that no flag reads: a misspelt one
/// would otherwise be ignored without a word, as an unknown key in the file is not.
/// A listen address: `IP:port`, or `host:port` for a host name that resolves (`localhost:9935`);
/// the first address it resolves to is used.
fn listen_addr(key: &str, raw: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // IPv4 first: `localhost` often resolves to ::1 first, which not every host can bind.
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(raw).map(|a| {
        let all: Vec<SocketAddr> = a.collect();
        all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
    });
    match resolved {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(ConfigError::Invalid(format!("{key} '{raw}' resolves to no address"))),
        Err(e) => Err(ConfigError::Invalid(format!(
            "{key} '{raw}' is not an IP:port address or a host:port that resolves ({e})"
        ))),
    }
}

pub(super) fn check_env(names: impl Iterator<Item = String>) -> Result<(), ConfigError> {
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

impl Config {
    /// Checks every value, derives the parsed forms and unlocks the signing key if one is
    /// configured.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        self.validate_with(Unlock::Yes)
    }

    pub(super) fn validate_with(self, unlock: Unlock) -> Result<Validated, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let http_addr = listen_addr("http_addr", &self.http_addr)?;
        let admin_addr = listen_addr("admin_addr", &self.admin_addr)?;
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
        let p = &self.payments;
        if !(p.max_ticket_ev > 0.0 && p.max_total_ev > 0.0) {
            return Err(ConfigError::Invalid(
                "payments.max_ticket_ev and payments.max_total_ev must be positive".into(),
            ));
        }
        let max_face_value = match &p.max_face_value {
            None => None,
            Some(v) => Some(v.trim().parse::<num_bigint::BigUint>().map_err(|_| {
                ConfigError::Invalid(format!("payments.max_face_value '{v}' is not a whole number of wei"))
            })?),
        };
        if p.max_ev_per_capability_hour.is_some_and(|c| c <= 0.0) {
            return Err(ConfigError::Invalid("payments.max_ev_per_capability_hour must be positive".into()));
        }
        let payment_limits = byoc_actors::payment::Limits {
            max_ticket_ev: p.max_ticket_ev,
            max_total_ev: p.max_total_ev,
            max_face_value,
            max_ev_per_capability_hour: p.max_ev_per_capability_hour,
        };
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
            payment_limits,
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
pub(super) enum Unlock {
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
