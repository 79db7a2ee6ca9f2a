//! A discovery record as a runner pair's offer: where work goes, its free slots, its price as
//! the pair publishes it, whether the gateway can pay it, and what the admin API shows of it.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::json;

use super::freshness::Standing;
use super::record::RunnerRecord;
use crate::pair::DiscoveredOffer;
use crate::protocol::token::Price;

/// What the admin API shows of a runner (the pair report's `runner`).
pub(crate) fn details(rec: &RunnerRecord, runner: &str, standing: Standing, listed: bool) -> serde_json::Value {
    json!({
        "runner": runner,
        "route": rec.route,
        "app": rec.app,
        "mode": rec.mode,
        "url": rec.url,
        "gpu": rec.gpu,
        "version": rec.version,
        "metadata": rec.metadata,
        "capacity": rec.capacity,
        "capacity_used": rec.capacity_used,
        "capacity_available": rec.capacity_available,
        "price": rec.price,
        "price_unusable": rec.price_unusable,
        "last_seen": rec.last_seen,
        "standing": standing.as_str(),
        "listed": listed,
    })
}

/// A digest of the record but its capacity: a change ends a refusal.
pub(crate) fn fingerprint(rec: &RunnerRecord) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rec.url.hash(&mut h);
    rec.app.hash(&mut h);
    rec.mode.hash(&mut h);
    rec.price.hash(&mut h);
    rec.price_unusable.hash(&mut h);
    h.finish()
}

/// The offer of `rec` (runner id `runner`, its orchestrator's records `standing`), given
/// whether the gateway can pay priced runners.
pub(crate) fn offer(rec: &RunnerRecord, runner: &str, standing: Standing, payable: bool) -> DiscoveredOffer {
    let priced = rec.price.is_some_and(|p| !p.is_free());
    DiscoveredOffer {
        url: Arc::from(rec.url.as_str()),
        available_capacity: rec.capacity_available,
        price: rec.price.filter(|p| !p.is_free()).map(|p| {
            let (price_per_unit, pixels_per_unit) = p.as_pair_price();
            Price { price_per_unit, pixels_per_unit }
        }),
        payment_required: priced && !payable,
        price_unusable: rec.price_unusable.is_some(),
        fingerprint: fingerprint(rec),
        details: Arc::new(details(rec, runner, standing, true)),
    }
}
