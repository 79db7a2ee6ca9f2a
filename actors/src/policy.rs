//! Per-capability routing policy: the routing profile and the retry knobs that the
//! dispatcher's attempt loop obeys.
//!
//! Profiles carry the defaults (from the seeds: low-latency jobs retry within about 8 s,
//! per-frame utilities allow for cold starts, chained jobs allow the most); per-capability
//! fields override them. Policies are shared read-mostly between HTTP workers.

mod book;
mod profile;

pub use book::PolicyBook;
pub(crate) use profile::Profile;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::breaker::BreakerConfig;
use crate::capability::Capability;

pub use crate::clock::MAX_DURATION;

/// Jobs that may wait for a slot in one capability's queue unless `limits.queue_depth` or the
/// capability's `queue_depth` says otherwise.
pub const DEFAULT_QUEUE_DEPTH: u32 = 1024;

/// Largest queue depth a policy may set.
pub const MAX_QUEUE_DEPTH: u32 = 1 << 20;

/// What every capability's policy inherits unless it overrides it: the `[breaker]` table and
/// `limits.queue_depth`.
#[derive(Debug, Clone, PartialEq)]
pub struct Globals {
    /// The global breaker configuration.
    pub breaker: BreakerConfig,
    /// Jobs that may wait in one capability's queue.
    pub queue_depth: u32,
}

impl Default for Globals {
    fn default() -> Self {
        Self { breaker: BreakerConfig::default(), queue_depth: DEFAULT_QUEUE_DEPTH }
    }
}

/// A warm-up job the gateway sends to a new pair before giving it client traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Warmup {
    /// Path after `/process/request/` (usually the capability name).
    pub(crate) path: String,
    /// Body to send (for example a tiny image job).
    #[serde(default)]
    pub(crate) body: String,
    /// Its `Content-Type`.
    #[serde(default = "json_content_type")]
    pub(crate) content_type: String,
    /// `timeout_seconds` of the warm-up job.
    #[serde(default = "warmup_timeout")]
    pub timeout_seconds: u64,
}

fn json_content_type() -> String {
    "application/json".into()
}

fn warmup_timeout() -> u64 {
    60
}

/// Per-capability overrides of the global `[breaker]` table; unset fields inherit it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakerOverrides {
    /// See [`BreakerConfig::consecutive_failures`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) consecutive_failures: Option<u32>,
    /// See [`BreakerConfig::base_open`].
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) base_open: Option<Duration>,
    /// See [`BreakerConfig::max_open`].
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) max_open: Option<Duration>,
    /// See [`BreakerConfig::half_open_permits`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) half_open_permits: Option<u32>,
    /// See [`BreakerConfig::window`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) window: Option<u32>,
    /// See [`BreakerConfig::min_calls`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) min_calls: Option<u32>,
    /// See [`BreakerConfig::failure_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failure_rate: Option<f64>,
    /// See [`BreakerConfig::slow_call_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slow_call_rate: Option<f64>,
    /// See [`BreakerConfig::short_pool_permits`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) short_pool_permits: Option<u32>,
}

impl BreakerOverrides {
    /// `base` with these overrides applied.
    pub(crate) fn apply(&self, base: &BreakerConfig) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: self.consecutive_failures.unwrap_or(base.consecutive_failures),
            base_open: self.base_open.unwrap_or(base.base_open),
            max_open: self.max_open.unwrap_or(base.max_open),
            half_open_permits: self.half_open_permits.unwrap_or(base.half_open_permits),
            jitter: base.jitter,
            window: self.window.unwrap_or(base.window),
            min_calls: self.min_calls.unwrap_or(base.min_calls),
            failure_rate: self.failure_rate.unwrap_or(base.failure_rate),
            slow_call_rate: self.slow_call_rate.unwrap_or(base.slow_call_rate),
            short_pool_permits: self.short_pool_permits.unwrap_or(base.short_pool_permits),
        }
    }
}

/// A capability's policy as configured: a profile plus optional overrides. The same shape
/// is used in the config file (`[capabilities.NAME]`) and by `PUT /admin/capabilities/NAME`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapabilityPolicy {
    /// The routing profile whose defaults apply.
    #[serde(default)]
    pub(crate) profile: Profile,
    /// Overall time within which new attempts may start.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) retry_timeout: Option<Duration>,
    /// Attempts per job, the first included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_attempts: Option<u32>,
    /// Bound on one attempt when another pair could take the job after it; otherwise (the
    /// last candidate, a cold pair) an attempt gets the job's `timeout_seconds + 5 s`.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) per_try_timeout: Option<Duration>,
    /// Longest a job waits for a free slot when every pair is at its limit (also bounded by
    /// the job's own `timeout_seconds + 5 s`).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) queue_timeout: Option<Duration>,
    /// Jobs that may wait for a free slot (default `limits.queue_depth`); past it, 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) queue_depth: Option<u32>,
    /// A success slower than this is a slow call (breaker slow-call rate).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) slow_call_threshold: Option<Duration>,
    /// Retries allowed as a share of recent requests (Envoy/Linkerd retry budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry_budget_percent: Option<f64>,
    /// Retries per second always allowed, whatever the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry_budget_min_per_sec: Option<u32>,
    /// Price ceiling in wei per `pixels_per_unit` units; a pair advertising more is not
    /// routable. No ceiling when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_price_per_unit: Option<i64>,
    /// Units the ceiling covers (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pixels_per_unit: Option<i64>,
    /// Expected `Content-Type` (media type) of a successful answer; another one is a contract
    /// mismatch: failover and an accuracy penalty for the pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) response_content_type: Option<String>,
    /// A first answer slower than this deprioritises the pair for `cold_start_penalty`.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) cold_start_threshold: Option<Duration>,
    /// How long a slow cold start deprioritises the pair (`0s` turns deprioritisation off).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) cold_start_penalty: Option<Duration>,
    /// Concurrent jobs a new or recovered pair gets until it has answered once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cold_start_concurrency: Option<u32>,
    /// Optional warm-up job sent to a new pair before client traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) warmup: Option<Warmup>,
    /// Breaker overrides for this capability's pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) breaker: Option<BreakerOverrides>,
}

/// The knobs in force after applying overrides to the profile.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Effective {
    /// Overall time within which new attempts may start.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String)]
    pub retry_timeout: Duration,
    /// Attempts per job.
    pub max_attempts: u32,
    /// Bound on one attempt when another pair could take the job after it.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String)]
    pub per_try_timeout: Duration,
    /// Longest wait for a free slot.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String)]
    pub(crate) queue_timeout: Duration,
    /// Jobs that may wait for a free slot.
    pub(crate) queue_depth: u32,
    /// Slow-call threshold.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String)]
    pub slow_call_threshold: Duration,
    /// Retry budget share.
    pub retry_budget_percent: f64,
    /// Retry budget floor per second.
    pub(crate) retry_budget_min_per_sec: u32,
    /// Price ceiling (wei per `pixels_per_unit`), if any.
    pub max_price_per_unit: Option<i64>,
    /// Units of the ceiling.
    pub pixels_per_unit: i64,
    /// Expected media type of successful answers, if any.
    pub(crate) response_content_type: Option<String>,
    /// Cold-start threshold.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String)]
    pub cold_start_threshold: Duration,
    /// Cold-start penalty duration.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String)]
    pub cold_start_penalty: Duration,
    /// Concurrency of a pair until its first answer.
    pub cold_start_concurrency: u32,
    /// Warm-up job, if any.
    pub warmup: Option<Warmup>,
    /// The breaker configuration of this capability's pairs (shared by their breakers).
    #[schema(value_type = BreakerConfig)]
    pub breaker: Arc<BreakerConfig>,
}

impl Effective {
    /// Whether a token price is over this capability's ceiling. Compared as exact fractions
    /// (`p/q > c/d` as `p*d > c*q`), so no rounding decides a borderline price.
    pub(crate) fn over_ceiling(&self, price_per_unit: i64, pixels_per_unit: i64) -> bool {
        let Some(ceiling) = self.max_price_per_unit else { return false };
        let q = i128::from(pixels_per_unit.max(1));
        let d = i128::from(self.pixels_per_unit.max(1));
        i128::from(price_per_unit) * d > i128::from(ceiling) * q
    }

    /// Price relative to the ceiling in [0, 1] (0 without a ceiling or for a free pair).
    pub(crate) fn price_share(&self, price_per_unit: i64, pixels_per_unit: i64) -> f64 {
        match self.max_price_per_unit {
            Some(c) if c > 0 && price_per_unit > 0 => {
                let unit = price_per_unit as f64 / pixels_per_unit.max(1) as f64;
                let ceiling = c as f64 / self.pixels_per_unit.max(1) as f64;
                (unit / ceiling).clamp(0.0, 1.0)
            }
            _ => 0.0,
        }
    }

    /// Whether an answer's `Content-Type` breaks the capability's response contract.
    pub(crate) fn contract_mismatch(&self, content_type: Option<&str>) -> bool {
        let Some(expected) = &self.response_content_type else { return false };
        let media = |s: &str| s.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        content_type.is_none_or(|ct| media(ct) != media(expected))
    }
}

impl CapabilityPolicy {
    /// Overrides applied to the profile's defaults and to the global settings.
    pub(crate) fn effective_with(&self, globals: &Globals) -> Effective {
        let d = self.profile.defaults();
        let breaker = &globals.breaker;
        Effective {
            retry_timeout: self.retry_timeout.unwrap_or(d.retry_timeout),
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            per_try_timeout: self.per_try_timeout.unwrap_or(d.per_try_timeout),
            queue_timeout: self.queue_timeout.unwrap_or(d.queue_timeout),
            queue_depth: self.queue_depth.unwrap_or(globals.queue_depth),
            slow_call_threshold: self.slow_call_threshold.unwrap_or(d.slow_call_threshold),
            retry_budget_percent: self.retry_budget_percent.unwrap_or(0.2),
            retry_budget_min_per_sec: self.retry_budget_min_per_sec.unwrap_or(10),
            max_price_per_unit: self.max_price_per_unit,
            pixels_per_unit: self.pixels_per_unit.unwrap_or(1),
            response_content_type: self.response_content_type.clone(),
            cold_start_threshold: self.cold_start_threshold.unwrap_or(d.cold_start_threshold),
            cold_start_penalty: self.cold_start_penalty.unwrap_or(Duration::from_secs(60)),
            cold_start_concurrency: self.cold_start_concurrency.unwrap_or(1),
            warmup: self.warmup.clone(),
            breaker: Arc::new(self.breaker.as_ref().map_or_else(|| breaker.clone(), |o| o.apply(breaker))),
        }
    }

    /// Overrides applied with the default global settings.
    pub fn effective(&self) -> Effective {
        self.effective_with(&Globals::default())
    }

    /// Checks the overrides are usable against the default global settings.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_with(&BreakerConfig::default())
    }

    /// Checks the overrides are usable against the global breaker config they modify.
    pub fn validate_with(&self, global: &BreakerConfig) -> Result<(), String> {
        if self.max_attempts == Some(0) {
            return Err("max_attempts must be at least 1".into());
        }
        if self.max_attempts.is_some_and(|n| n > 20) {
            return Err("max_attempts must be at most 20".into());
        }
        for (name, d) in [
            ("retry_timeout", self.retry_timeout),
            ("per_try_timeout", self.per_try_timeout),
            ("slow_call_threshold", self.slow_call_threshold),
            ("cold_start_threshold", self.cold_start_threshold),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(format!("{name} must be positive"));
            }
        }
        for (name, d) in [
            ("retry_timeout", self.retry_timeout),
            ("per_try_timeout", self.per_try_timeout),
            ("slow_call_threshold", self.slow_call_threshold),
            ("cold_start_threshold", self.cold_start_threshold),
            ("cold_start_penalty", self.cold_start_penalty),
            ("queue_timeout", self.queue_timeout),
        ] {
            if d.is_some_and(|d| d > MAX_DURATION) {
                return Err(format!("{name} must be at most 7 days"));
            }
        }
        if self.retry_budget_percent.is_some_and(|p| !(0.0..=10.0).contains(&p)) {
            return Err("retry_budget_percent must be between 0 and 10 (0.2 = 20 %)".into());
        }
        if self.max_price_per_unit.is_some_and(|p| p < 0) {
            return Err("max_price_per_unit must not be negative".into());
        }
        if self.pixels_per_unit.is_some_and(|p| p <= 0) {
            return Err("pixels_per_unit must be positive".into());
        }
        if self.queue_depth.is_some_and(|d| d > MAX_QUEUE_DEPTH) {
            return Err(format!("queue_depth must be at most {MAX_QUEUE_DEPTH}"));
        }
        if self.cold_start_concurrency == Some(0) {
            return Err("cold_start_concurrency must be at least 1".into());
        }
        if let Some(ct) = &self.response_content_type {
            if ct.trim().is_empty() || !ct.contains('/') {
                return Err(format!("response_content_type '{ct}' is not a media type like application/json"));
            }
        }
        if let Some(w) = &self.warmup {
            if w.timeout_seconds == 0 || w.timeout_seconds > crate::protocol::header::MAX_TIMEOUT_SECONDS {
                return Err("warmup.timeout_seconds must be between 1 and 86400".into());
            }
            if w.path.contains('?') || w.path.contains('#') {
                return Err("warmup.path must be a plain path, without a query or fragment".into());
            }
            // Sent as `/process/request/{path}`: the rule a client's job path follows.
            crate::protocol::path::check_worker_path(w.path.trim_start_matches('/'))
                .map_err(|why| format!("warmup.path {why}"))?;
        }
        if let Some(b) = &self.breaker {
            b.apply(global).validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_over_profile_defaults() {
        let p = CapabilityPolicy { profile: Profile::Chained, max_attempts: Some(2), ..Default::default() };
        let e = p.effective();
        assert_eq!(e.max_attempts, 2);
        assert_eq!(e.retry_timeout, Duration::from_secs(120));
        assert_eq!(CapabilityPolicy::default().effective().retry_timeout, Duration::from_secs(8));
    }

    #[test]
    fn book_falls_back_to_default() {
        let depth = Capability::new("depth").expect("valid");
        let other = Capability::new("other").expect("valid");
        let mut m = HashMap::new();
        m.insert(depth.clone(), CapabilityPolicy { max_attempts: Some(7), ..Default::default() });
        let book = PolicyBook::new(Globals::default(), CapabilityPolicy::default(), m);
        assert_eq!(book.effective(&depth).max_attempts, 7);
        assert_eq!(book.effective(&other).max_attempts, 3);
    }

    #[test]
    fn validate_rejects_zeroes() {
        assert!(CapabilityPolicy { max_attempts: Some(0), ..Default::default() }.validate().is_err());
        assert!(CapabilityPolicy { retry_timeout: Some(Duration::ZERO), ..Default::default() }.validate().is_err());
        assert!(CapabilityPolicy::default().validate().is_ok());
    }

    #[test]
    fn price_ceiling_compares_exact_fractions() {
        let e = CapabilityPolicy { max_price_per_unit: Some(1000), pixels_per_unit: Some(3), ..Default::default() }
            .effective();
        // Ceiling: 1000/3 wei per unit.
        assert!(!e.over_ceiling(333, 1));
        assert!(e.over_ceiling(334, 1));
        assert!(!e.over_ceiling(1000, 3));
        assert!(e.over_ceiling(1001, 3));
        assert!(!e.over_ceiling(i64::MAX, i64::MAX));
        assert!(!CapabilityPolicy::default().effective().over_ceiling(i64::MAX, 1), "no ceiling");
        assert_eq!(e.price_share(0, 1), 0.0);
        assert!((e.price_share(500, 3) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn contract_compares_media_types() {
        let e = CapabilityPolicy { response_content_type: Some("application/json".into()), ..Default::default() }
            .effective();
        assert!(!e.contract_mismatch(Some("application/json; charset=utf-8")));
        assert!(!e.contract_mismatch(Some("Application/JSON")));
        assert!(e.contract_mismatch(Some("text/plain")));
        assert!(e.contract_mismatch(None));
        assert!(!CapabilityPolicy::default().effective().contract_mismatch(Some("text/plain")));
    }

    #[test]
    fn breaker_overrides_inherit_the_global_table() {
        let global = BreakerConfig { consecutive_failures: 9, ..Default::default() };
        let p = CapabilityPolicy {
            breaker: Some(BreakerOverrides { min_calls: Some(4), ..Default::default() }),
            ..Default::default()
        };
        let b = p.effective_with(&Globals { breaker: global, ..Globals::default() }).breaker;
        assert_eq!((b.consecutive_failures, b.min_calls), (9, 4));
        let bad = CapabilityPolicy {
            breaker: Some(BreakerOverrides { min_calls: Some(0), ..Default::default() }),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn toml_shape_parses() {
        let p: CapabilityPolicy = serde_json::from_str(r#"{"profile":"per-frame","retry_timeout":"12s"}"#).expect("ok");
        assert_eq!(p.effective().retry_timeout, Duration::from_secs(12));
        assert!(serde_json::from_str::<CapabilityPolicy>(r#"{"bogus":1}"#).is_err());
    }
}
