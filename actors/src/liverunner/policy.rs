//! Per-app settings (`[live_runner.apps."NAME"]`): the price ceilings a runner of the app is
//! held against (one per kind of unit), the spend limit of payments for it, and the routing
//! policy its calls and sessions follow (the capability policy of BYOC, same knobs).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::app::AppName;
use super::price::{Ceilings, RunnerPrice};
use crate::capability::Capability;
use crate::policy::{CapabilityPolicy, Effective, Globals, PolicyBook};

/// One app's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppPolicy {
    /// Ceiling in wei per second for runners priced per second (and per 720p pixel-second,
    /// converted): a runner advertising more is not routed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_per_second: Option<u64>,
    /// Ceiling in wei per request (single-shot) or session for `fixed` runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_per_request: Option<u64>,
    /// Most expected value paid for this app over any hour, in wei (payments with the
    /// gateway's own key): past it, sessions end and new ones are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spend_per_hour: Option<f64>,
    /// Routing policy of its calls and sessions (profile, attempts, timeouts, breaker).
    #[serde(default)]
    pub policy: CapabilityPolicy,
}

impl AppPolicy {
    /// Its ceilings.
    pub(crate) fn ceilings(&self) -> Ceilings {
        Ceilings { per_second: self.max_price_per_second, per_request: self.max_price_per_request }
    }

    /// Checks it is usable.
    pub fn validate(&self, globals: &Globals) -> Result<(), String> {
        if self.max_spend_per_hour.is_some_and(|s| !s.is_finite() || s < 0.0) {
            return Err("max_spend_per_hour must be a non-negative number of wei".into());
        }
        if self.policy.max_price_per_unit.is_some() || self.policy.pixels_per_unit.is_some() {
            return Err("an app's price ceilings are max_price_per_second and max_price_per_request, not policy.max_price_per_unit".into());
        }
        if self.policy.warmup.is_some() {
            return Err("warm-up jobs are BYOC jobs; an app's policy cannot have one".into());
        }
        self.policy.validate_with(&globals.breaker)
    }
}

/// Every app's settings, with a default for apps without their own.
#[derive(Debug, Clone)]
pub struct AppPolicies {
    book: PolicyBook,
    per_app: Arc<HashMap<Capability, AppPolicy>>,
    default: Arc<AppPolicy>,
}

impl Default for AppPolicies {
    fn default() -> Self {
        Self::new(Globals::default(), AppPolicy::default(), Vec::new())
    }
}

impl AppPolicies {
    /// The settings of `apps`, with `default` for the others, over `globals`.
    pub fn new(globals: Globals, default: AppPolicy, apps: Vec<(AppName, AppPolicy)>) -> Self {
        let per_app: HashMap<Capability, AppPolicy> = apps.into_iter().map(|(a, p)| (a.board_key(), p)).collect();
        let book = PolicyBook::new(
            globals,
            default.policy.clone(),
            per_app.iter().map(|(c, p)| (c.clone(), p.policy.clone())).collect(),
        );
        Self { book, per_app: Arc::new(per_app), default: Arc::new(default) }
    }

    fn get(&self, app: &Capability) -> &AppPolicy {
        self.per_app.get(app).unwrap_or(&self.default)
    }

    /// The policy book the app boards are routed with.
    pub fn book(&self) -> &PolicyBook {
        &self.book
    }

    /// The ceilings of `app`.
    pub(crate) fn ceilings(&self, app: &Capability) -> Ceilings {
        self.get(app).ceilings()
    }

    /// The spend limit of `app` (EV wei per hour), if any.
    pub fn spend_limit(&self, app: &Capability) -> Option<f64> {
        self.get(app).max_spend_per_hour
    }

    /// The policy of one runner of `app` priced `price`: the app's, with the ceiling of the
    /// price's kind as the pair's `max_price_per_unit` (a pair publishes wei per second, or
    /// wei per request for `fixed`).
    pub(crate) fn for_runner(&self, app: &Capability, price: Option<RunnerPrice>) -> Arc<Effective> {
        let base = self.book.effective(app);
        let ceiling = price.and_then(|p| p.ceiling(self.ceilings(app)));
        if ceiling.is_none() && base.max_price_per_unit.is_none() {
            return base;
        }
        let mut e = (*base).clone();
        e.max_price_per_unit = ceiling.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        e.pixels_per_unit = 1;
        Arc::new(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liverunner::price::Unit;

    #[test]
    fn a_runner_is_held_against_the_ceiling_of_its_price_kind() {
        let app = AppName::new("live-video-to-video/scope").expect("valid");
        let p = AppPolicy { max_price_per_second: Some(1_000), max_price_per_request: Some(9), ..Default::default() };
        let book = AppPolicies::new(Globals::default(), AppPolicy::default(), vec![(app.clone(), p)]);
        let key = app.board_key();
        let per_second = book.for_runner(&key, Some(RunnerPrice { price: 1_001, unit: Unit::Seconds }));
        let (ppu, units) = RunnerPrice { price: 1_001, unit: Unit::Seconds }.as_pair_price();
        assert!(per_second.over_ceiling(ppu, units));
        let fixed = book.for_runner(&key, Some(RunnerPrice { price: 9, unit: Unit::Fixed }));
        assert!(!fixed.over_ceiling(9, 1));
        assert!(fixed.over_ceiling(10, 1));
        let other = AppName::new("echo").expect("valid").board_key();
        assert_eq!(book.for_runner(&other, None).max_price_per_unit, None, "no ceiling by default");
    }

    #[test]
    fn bad_app_settings_are_refused() {
        let g = Globals::default();
        assert!(AppPolicy { max_spend_per_hour: Some(-1.0), ..Default::default() }.validate(&g).is_err());
        let mut p = AppPolicy::default();
        p.policy.max_price_per_unit = Some(3);
        assert!(p.validate(&g).unwrap_err().contains("max_price_per_second"));
        assert!(AppPolicy::default().validate(&g).is_ok());
    }
}
