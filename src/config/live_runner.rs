//! `[live_runner]`: Live Runner apps (discovery of each registered orchestrator's runners, the
//! app boards' policies and aliases). Checked into the domain's settings at validation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use byoc_actors::liverunner::{
    AppName, AppPolicies, AppPolicy, DispatchSettings, LiveRunnerSettings, RemoteSigner as RemoteSignerPayer,
    SessionSettings, SignerDiscovery,
};
use byoc_actors::policy::Globals;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The `[live_runner]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveRunnerConfig {
    /// Discover runners at the registered orchestrators and serve `/apps/...` (an orchestrator
    /// without Live Runner answers its first fetch 404 and is asked again every 10 minutes).
    pub enabled: bool,
    /// An orchestrator's `/discovery` is fetched this often while it answers (jittered by a
    /// fifth).
    #[serde(with = "humantime_serde")]
    pub discovery_refresh: Duration,
    /// ... this soon after a failed fetch, doubling while it fails, or when a runner is full.
    #[serde(with = "humantime_serde")]
    pub discovery_retry: Duration,
    /// Longest wait between fetches of a failing orchestrator.
    #[serde(with = "humantime_serde")]
    pub discovery_retry_max: Duration,
    /// Bound on one fetch.
    #[serde(with = "humantime_serde")]
    pub discovery_timeout: Duration,
    /// Largest discovery answer read.
    pub discovery_max_bytes: usize,
    /// Records of an orchestrator whose discovery fails (but answers) are kept, stale, this
    /// long after its last success; then they expire.
    #[serde(with = "humantime_serde")]
    pub discovery_grace: Duration,
    /// A runner unlisted or expired this long is retired.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
    /// Most distinct apps held (each is a board and a metric label).
    pub max_apps: usize,
    /// Names clients may use for an app (`scope = "live-video-to-video/scope"`).
    pub aliases: BTreeMap<String, String>,
    /// Settings of apps without their own.
    pub default_app: AppPolicy,
    /// Per-app settings: price ceilings, spend limit, routing policy.
    pub apps: BTreeMap<String, AppPolicy>,
    /// A go-livepeer remote signer to find more orchestrators with
    /// (`GET /discover-orchestrators`) and to pay priced runners through
    /// (`POST /generate-live-payment`).
    pub remote_signer: Option<RemoteSigner>,
    /// A session with no request in flight for this long is released at its runner (a client
    /// that died does not hold a runner forever, go-livepeer #4016).
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// Most sessions the gateway holds at once.
    pub max_sessions: usize,
    /// How often metered sessions at priced runners are topped up (at most the orchestrators'
    /// debit period, go-livepeer's 5 s by default).
    #[serde(with = "humantime_serde")]
    pub payment_interval: Duration,
    /// Most runners tried for one call or reservation.
    pub max_attempts: usize,
    /// Bound on a runner's answer head (status and headers) to a call or a reservation.
    #[serde(with = "humantime_serde")]
    pub head_timeout: Duration,
}

/// A remote signer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSigner {
    /// Its base URL.
    pub url: String,
    /// Headers sent with every request to it (values are secrets: never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Also read its orchestrator list (`GET /discover-orchestrators`); each orchestrator it
    /// names is then asked directly (the signer's own records can be 25 minutes stale).
    #[serde(default)]
    pub discovery: bool,
    /// How often that list is read.
    #[serde(default = "signer_refresh", with = "humantime_serde")]
    pub discovery_refresh: Duration,
    /// Pay priced runners through it (`POST /generate-live-payment`) rather than with the
    /// gateway's key: for operators whose key lives in the signer.
    #[serde(default)]
    pub payments: bool,
    /// Bound on one request to it.
    #[serde(default = "signer_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn signer_refresh() -> Duration {
    Duration::from_secs(60)
}

fn signer_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for LiveRunnerConfig {
    fn default() -> Self {
        let d = LiveRunnerSettings::default();
        Self {
            enabled: true,
            discovery_refresh: d.refresh,
            discovery_retry: d.retry,
            discovery_retry_max: d.retry_max,
            discovery_timeout: d.timeout,
            discovery_max_bytes: d.max_document_bytes,
            discovery_grace: d.grace,
            forget_after: d.forget_after,
            max_apps: d.max_apps,
            aliases: BTreeMap::new(),
            default_app: AppPolicy::default(),
            apps: BTreeMap::new(),
            remote_signer: None,
            session_idle_timeout: SessionSettings::default().idle_timeout,
            max_sessions: SessionSettings::default().max_sessions,
            payment_interval: SessionSettings::default().payment_interval,
            max_attempts: DispatchSettings::default().max_attempts,
            head_timeout: DispatchSettings::default().head_timeout,
        }
    }
}

/// `[live_runner]` checked: what the gateway starts Live Runner with.
#[derive(Debug, Clone)]
pub struct LiveRunnerValidated {
    /// Discovery.
    pub settings: LiveRunnerSettings,
    /// App policies.
    pub policies: AppPolicies,
    /// Aliases (alias, app).
    pub aliases: Vec<(String, AppName)>,
    /// How calls and reservations run.
    pub dispatch: DispatchSettings,
    /// Sessions.
    pub sessions: SessionSettings,
    /// The remote signer that pays priced runners, when `remote_signer.payments` is set.
    pub remote_payments: Option<Arc<RemoteSignerPayer>>,
}

fn invalid(m: String) -> ConfigError {
    ConfigError::Invalid(format!("live_runner.{m}"))
}

impl LiveRunnerConfig {
    /// Checks the section; `keyed` says whether the gateway has a key to pay priced runners
    /// with (a remote signer with `payments` can pay too).
    pub fn validate(&self, globals: &Globals, keyed: bool) -> Result<Option<LiveRunnerValidated>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        for (name, d) in [
            ("discovery_refresh", self.discovery_refresh),
            ("discovery_retry", self.discovery_retry),
            ("discovery_retry_max", self.discovery_retry_max),
            ("discovery_timeout", self.discovery_timeout),
        ] {
            if d.is_zero() || d > byoc_actors::policy::MAX_DURATION {
                return Err(invalid(format!("{name} must be between 1 ms and 7 days")));
            }
        }
        if self.discovery_max_bytes < 1024 || self.discovery_max_bytes > 64 << 20 {
            return Err(invalid("discovery_max_bytes must be between 1 KiB and 64 MiB".into()));
        }
        for (name, d) in [
            ("session_idle_timeout", self.session_idle_timeout),
            ("head_timeout", self.head_timeout),
            ("payment_interval", self.payment_interval),
        ] {
            if d < Duration::from_millis(10) || d > byoc_actors::policy::MAX_DURATION {
                return Err(invalid(format!("{name} must be between 10 ms and 7 days")));
            }
        }
        if self.max_sessions == 0 || self.max_sessions > 1_000_000 {
            return Err(invalid("max_sessions must be between 1 and 1000000".into()));
        }
        if self.max_attempts == 0 || self.max_attempts > 16 {
            return Err(invalid("max_attempts must be between 1 and 16".into()));
        }
        if self.max_apps == 0 || self.max_apps > 100_000 {
            return Err(invalid("max_apps must be between 1 and 100000".into()));
        }
        let mut aliases = Vec::new();
        for (alias, app) in &self.aliases {
            AppName::new(alias).map_err(|e| invalid(format!("aliases.{alias}: the alias: {e}")))?;
            let app = AppName::new(app).map_err(|e| invalid(format!("aliases.{alias}: {e}")))?;
            aliases.push((alias.clone(), app));
        }
        self.default_app.validate(globals).map_err(|e| invalid(format!("default_app: {e}")))?;
        let mut apps = Vec::new();
        for (name, policy) in &self.apps {
            let app = AppName::new(name).map_err(|e| invalid(format!("apps.\"{name}\": {e}")))?;
            policy.validate(globals).map_err(|e| invalid(format!("apps.\"{name}\": {e}")))?;
            apps.push((app, policy.clone()));
        }
        let mut remote_payments = None;
        let signer_discovery = match &self.remote_signer {
            Some(s) => {
                let url = byoc_actors::discovery::webhook::check_webhook_url(&s.url)
                    .map_err(|e| invalid(format!("remote_signer.url: {e}")))?;
                let origin = byoc_actors::liverunner::record::origin_of(&url)
                    .ok_or_else(|| invalid("remote_signer.url must be an http(s) origin".into()))?;
                let headers = byoc_actors::discovery::webhook::WebhookHeaders::new(
                    s.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .map_err(|e| invalid(format!("remote_signer.headers: {e}")))?;
                if s.discovery_refresh.is_zero() {
                    return Err(invalid("remote_signer.discovery_refresh must be positive".into()));
                }
                if s.timeout < Duration::from_millis(10) || s.timeout > Duration::from_secs(300) {
                    return Err(invalid("remote_signer.timeout must be between 10 ms and 5 minutes".into()));
                }
                if s.payments {
                    remote_payments =
                        Some(Arc::new(RemoteSignerPayer::new(origin.clone(), headers.clone(), s.timeout)));
                }
                s.discovery.then_some(SignerDiscovery { url: origin, headers })
            }
            None => None,
        };
        let settings = LiveRunnerSettings {
            refresh: self.discovery_refresh,
            retry: self.discovery_retry,
            retry_max: self.discovery_retry_max,
            timeout: self.discovery_timeout,
            max_document_bytes: self.discovery_max_bytes,
            grace: self.discovery_grace,
            forget_after: self.forget_after,
            registry_sync: self.discovery_refresh.min(LiveRunnerSettings::default().registry_sync),
            max_apps: self.max_apps,
            payable: keyed || remote_payments.is_some(),
            signer_discovery,
            signer_refresh: self.remote_signer.as_ref().map_or(signer_refresh(), |s| s.discovery_refresh),
        };
        Ok(Some(LiveRunnerValidated {
            settings,
            policies: AppPolicies::new(globals.clone(), self.default_app.clone(), apps),
            aliases,
            dispatch: DispatchSettings {
                max_attempts: self.max_attempts,
                head_timeout: self.head_timeout,
                mailbox_timeout: DispatchSettings::default().mailbox_timeout,
            },
            sessions: SessionSettings {
                idle_timeout: self.session_idle_timeout,
                max_sessions: self.max_sessions,
                payment_interval: self.payment_interval,
                ..SessionSettings::default()
            },
            remote_payments,
        }))
    }
}
