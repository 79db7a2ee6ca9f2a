//! Checking a whole configuration: addresses, limits, orchestrators, policies, discovery, the
//! runner's routes and the signing key (unlocked here, so a wrong password stops start-up).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use byoc_actors::capability::Capability;
use byoc_actors::discovery::webhook::{check_webhook_url, WebhookHeaders};
use byoc_actors::discovery::DiscoverySettings;
use byoc_actors::orchestrator::{normalize_url, split_labelled, Label, Listed, MAX_DECLARED_CAPABILITIES};
use byoc_actors::policy::CapabilityPolicy;
use byoc_actors::protocol::signer::{self, Offchain, Scheme, SharedSigner};

use super::{
    Config, ConfigError, Discovery, History, Limits, Payments, Routing, RunArgs, Runner, SignerConfig, Validated,
};

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

/// Refuses an environment variable named `BYOC_GATEWAY_*` that no flag reads: a misspelt one
/// would otherwise be ignored without a word, as an unknown key in the file is not.
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
        let (http_addr, admin_addr) = self.listeners()?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(format!("log.format must be 'text' or 'json', not '{}'", self.log.format)));
        }
        self.limits.check()?;
        self.routing.check()?;
        self.history.check()?;
        self.breaker.validate().map_err(invalid)?;
        self.default_policy.validate().map_err(|e| invalid(format!("default_policy: {e}")))?;
        let policies = self.capability_policies()?;
        let orchestrators = self.orchestrator_list()?;
        let discovery = self.discovery.settings()?;
        let runner_routes = self.runner.routes().map_err(invalid)?;
        let payment_limits = self.payments.limits()?;
        let stream_settings = self.streams.settings(self.limits.max_streams)?;
        let rtmp_addr = match self.streams.rtmp_addr.trim() {
            "" => None,
            raw => Some(listen_addr("streams.rtmp_addr", raw)?),
        };
        let etcd = self.registry.settings()?;
        let whip_addr = match self.streams.whip_udp_addr.trim() {
            "" => None,
            raw => {
                let addr = listen_addr("streams.whip_udp_addr", raw)?;
                if addr.ip().is_unspecified() {
                    return Err(ConfigError::Invalid(format!(
                        "streams.whip_udp_addr '{raw}': give the address publishers reach (it is the ICE \
                         candidate of every WHIP answer), not an unspecified one"
                    )));
                }
                Some(addr)
            }
        };
        let globals =
            byoc_actors::policy::Globals { breaker: self.breaker.clone(), queue_depth: self.limits.queue_depth };
        let keyed = self.signer.keystore.is_some();
        let live_runner = self.live_runner.validate(&globals, keyed)?;
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
            payment_limits,
            stream_settings,
            rtmp_addr,
            etcd,
            whip_addr,
            live_runner,
        })
    }

    /// The two listen addresses, and the admin API's protection: a token whenever it listens
    /// beyond loopback or guards the metrics.
    fn listeners(&self) -> Result<(SocketAddr, SocketAddr), ConfigError> {
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
        if self.metrics_require_token && self.admin_token.is_none() {
            return Err(invalid("metrics_require_token is set but no admin token is configured".into()));
        }
        Ok((http_addr, admin_addr))
    }

    /// The `[capabilities.NAME]` policies, each checked against the breaker it refines.
    fn capability_policies(&self) -> Result<Vec<(Capability, CapabilityPolicy)>, ConfigError> {
        let mut policies = Vec::new();
        for (name, policy) in &self.capabilities {
            let cap = Capability::new(name).map_err(|e| invalid(format!("capabilities.{name}: {e}")))?;
            policy.validate_with(&self.breaker).map_err(|e| invalid(format!("capabilities.{name}: {e}")))?;
            policies.push((cap, policy.clone()));
        }
        Ok(policies)
    }

    /// The orchestrators of `--orch-addr` (`URL` or `label=URL`) and `[[orchestrators]]`,
    /// normalised: one entry per URL, with the union of the capabilities listed for it and
    /// its label (two different labels for one URL are an error).
    fn orchestrator_list(&self) -> Result<Vec<Listed>, ConfigError> {
        let mut orchestrators: Vec<Listed> = Vec::new();
        let mut listed = Vec::new();
        for item in &self.orch_addr {
            let (label, url) = split_labelled(item).map_err(|e| invalid(format!("orch_addr '{item}': {e}")))?;
            listed.push((url, &[][..], label));
        }
        for o in &self.orchestrators {
            let label = o.label.as_deref().map(Label::new).transpose();
            let label = label.map_err(|e| invalid(format!("orchestrator {} label: {e}", o.url)))?;
            listed.push((o.url.as_str(), o.capabilities.as_slice(), label));
        }
        for (raw, caps, label) in listed {
            let url = normalize_url(raw).map_err(|e| invalid(format!("orchestrator: {e}")))?;
            if caps.len() > MAX_DECLARED_CAPABILITIES {
                return Err(invalid(format!(
                    "orchestrator {url}: {} capabilities listed; at most {MAX_DECLARED_CAPABILITIES} may be declared for one orchestrator",
                    caps.len()
                )));
            }
            let index = match orchestrators.iter().position(|l| l.url == url) {
                Some(i) => i,
                None => {
                    orchestrators.push(Listed { url: url.clone(), capabilities: Vec::new(), label: None });
                    orchestrators.len() - 1
                }
            };
            let entry = &mut orchestrators[index];
            match (&entry.label, label) {
                (Some(a), Some(b)) if *a != b => {
                    return Err(invalid(format!("orchestrator {url} is given two labels, '{a}' and '{b}'")));
                }
                (None, Some(b)) => entry.label = Some(b),
                _ => {}
            }
            for c in caps {
                let cap =
                    Capability::new(c).map_err(|e| invalid(format!("orchestrator {url} capability '{c}': {e}")))?;
                if !entry.capabilities.contains(&cap) {
                    entry.capabilities.push(cap);
                }
            }
            if entry.capabilities.len() > MAX_DECLARED_CAPABILITIES {
                return Err(invalid(format!(
                    "orchestrator {url}: more than {MAX_DECLARED_CAPABILITIES} capabilities declared over its entries"
                )));
            }
        }
        Ok(orchestrators)
    }
}

impl History {
    /// A period of at least 100 ms, a window of at least two periods and at most 1,000 of
    /// them, and at most 100,000 pairs: the history's memory stays bounded.
    fn check(&self) -> Result<(), ConfigError> {
        use byoc_actors::history::MAX_SAMPLES;
        if self.period < Duration::from_millis(100) {
            return Err(invalid("history.period must be at least 100ms".into()));
        }
        if self.window < self.period * 2 || self.window.as_millis() / self.period.as_millis() > MAX_SAMPLES as u128 {
            return Err(invalid(format!(
                "history.window must be between two and {MAX_SAMPLES} periods (history.period)"
            )));
        }
        if self.max_pairs > 100_000 {
            return Err(invalid("history.max_pairs must be at most 100000".into()));
        }
        Ok(())
    }
}

/// A configuration error with `message`.
fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

/// Every duration named must be positive.
fn positive(durations: &[(&str, Duration)]) -> Result<(), ConfigError> {
    match durations.iter().find(|(_, d)| d.is_zero()) {
        Some((name, _)) => Err(invalid(format!("{name} must be positive"))),
        None => Ok(()),
    }
}

impl Limits {
    fn check(&self) -> Result<(), ConfigError> {
        let l = self;
        if l.max_body_bytes == 0
            || l.max_response_bytes == 0
            || l.admin_body_bytes == 0
            || l.header_read_timeout.is_zero()
            || l.body_read_timeout.is_zero()
            || l.max_inflight_jobs == 0
            || l.max_streams == 0
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
        if l.answer_budget_bytes < l.max_response_bytes {
            return Err(invalid(format!(
                "limits.answer_budget_bytes ({}) must be at least limits.max_response_bytes ({}): an answer of the largest size could never be held",
                l.answer_budget_bytes, l.max_response_bytes
            )));
        }
        if l.max_response_bytes > u32::MAX as usize {
            return Err(invalid(format!("limits.max_response_bytes must be at most {} (4 GiB)", u32::MAX)));
        }
        if l.body_budget_client_percent == 0 || l.body_budget_client_percent > 100 {
            return Err(invalid(format!(
                "limits.body_budget_client_percent ({}) must be 1 to 100",
                l.body_budget_client_percent
            )));
        }
        if l.body_min_bytes_per_sec > 0 && l.body_rate_grace.is_zero() {
            return Err(invalid(
                "limits.body_rate_grace must be positive when limits.body_min_bytes_per_sec is set".into(),
            ));
        }
        if l.queue_depth > byoc_actors::policy::MAX_QUEUE_DEPTH {
            return Err(invalid(format!(
                "limits.queue_depth must be at most {}",
                byoc_actors::policy::MAX_QUEUE_DEPTH
            )));
        }
        Ok(())
    }
}

impl Routing {
    fn check(&self) -> Result<(), ConfigError> {
        let r = self;
        if r.discovery_probes_per_sec == 0 {
            return Err(invalid("routing.discovery_probes_per_sec must be at least 1".into()));
        }
        positive(&[
            ("routing.token_refresh", r.token_refresh),
            ("routing.token_retry", r.token_retry),
            ("routing.token_retry_max", r.token_retry_max),
            ("routing.token_timeout", r.token_timeout),
            ("routing.probe_wait", r.probe_wait),
            ("routing.connect_timeout", r.connect_timeout),
            ("routing.mailbox_timeout", r.mailbox_timeout),
            ("routing.flush_every", r.flush_every),
        ])
    }
}

impl Discovery {
    /// The webhook fetcher's settings, when a webhook is configured.
    fn settings(&self) -> Result<Option<DiscoverySettings>, ConfigError> {
        let Some(raw) = &self.webhook_url else { return Ok(None) };
        let webhook_url = check_webhook_url(raw).map_err(|e| invalid(format!("discovery.webhook_url: {e}")))?;
        positive(&[
            ("discovery.webhook_refresh", self.webhook_refresh),
            ("discovery.webhook_timeout", self.webhook_timeout),
        ])?;
        let headers = WebhookHeaders::new(self.webhook_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| invalid(format!("discovery.webhook_headers: {e}")))?;
        Ok(Some(DiscoverySettings {
            webhook_url,
            refresh: self.webhook_refresh,
            timeout: self.webhook_timeout,
            headers,
        }))
    }
}

impl Payments {
    /// The operator's spend limits.
    fn limits(&self) -> Result<byoc_actors::payment::Limits, ConfigError> {
        if !(self.max_ticket_ev > 0.0 && self.max_total_ev > 0.0) {
            return Err(invalid("payments.max_ticket_ev and payments.max_total_ev must be positive".into()));
        }
        let v = &self.max_face_value;
        let max_face_value =
            v.trim().parse::<num_bigint::BigUint>().ok().filter(|f| *f > num_bigint::BigUint::ZERO).ok_or_else(
                || invalid(format!("payments.max_face_value '{v}' is not a positive whole number of wei")),
            )?;
        if !(self.max_ev_per_capability_hour > 0.0 && self.max_ev_per_capability_hour.is_finite()) {
            return Err(invalid("payments.max_ev_per_capability_hour must be a positive number of wei".into()));
        }
        if self.refusal_backoff.is_zero() || self.refusal_backoff_max < self.refusal_backoff {
            return Err(invalid(
                "payments.refusal_backoff must be more than 0 and at most payments.refusal_backoff_max".into(),
            ));
        }
        Ok(byoc_actors::payment::Limits {
            max_ticket_ev: self.max_ticket_ev,
            max_total_ev: self.max_total_ev,
            max_face_value: Some(max_face_value),
            max_ev_per_capability_hour: Some(self.max_ev_per_capability_hour),
            refusal_backoff: self.refusal_backoff,
            refusal_backoff_max: self.refusal_backoff_max,
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
