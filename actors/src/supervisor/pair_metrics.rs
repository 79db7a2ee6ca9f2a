//! The per-pair series of `/metrics` ([`crate::metrics::pairs`]): read from the pairs' views at
//! the scrape, the first `limit` pairs on the boards in (orchestrator id, capability) order.

use super::*;
use crate::breaker::State;
use crate::metrics::pairs::{render, PairSample};

/// Renders the per-pair series of at most `limit` pairs (Prometheus text), to append to the
/// recorder's own. `limit` 0 renders none.
#[derive(Message)]
#[rtype(result = "String")]
pub struct RenderPairMetrics {
    /// Most pairs with series (`metrics_pair_series`).
    pub limit: usize,
}

impl Handler<RenderPairMetrics> for Supervisor {
    type Result = ResponseActFuture<Self, String>;

    fn handle(&mut self, msg: RenderPairMetrics, _ctx: &mut Self::Context) -> Self::Result {
        if msg.limit == 0 {
            return Box::pin(actix::fut::ready(String::new()));
        }
        // Fast-path answers still in the pairs' tallies are counted first, as the admin API's
        // reads do.
        Box::pin(self.settle().into_actor(self).map(move |(), act, _ctx| act.render_pair_metrics(msg.limit)))
    }
}

impl Supervisor {
    fn render_pair_metrics(&self, limit: usize) -> String {
        let mut out = String::new();
        let now = Instant::now();
        let on_board: Vec<(&PairKey, &PairEntry)> = self.pairs.iter().filter(|(_, e)| e.on_board).collect();
        let omitted = on_board.len().saturating_sub(limit);
        let views: Vec<(&PairKey, crate::pair::PairView)> =
            on_board.iter().take(limit).map(|(k, e)| (*k, e.view.read().clone())).collect();
        let samples: Vec<PairSample<'_>> = views
            .iter()
            .map(|(k, v)| {
                let c = &v.counters;
                PairSample {
                    orchestrator: &k.orchestrator.0,
                    capability: k.capability.as_str(),
                    label: v.orchestrator.label.as_deref(),
                    routable: v.routable_at(now).is_ok(),
                    breaker: match v.breaker_state_at(now) {
                        State::Closed => 0,
                        State::HalfOpen => 1,
                        State::Open => 2,
                    },
                    breaker_opens: u64::from(v.breaker_opens),
                    latency: v.latency_percentiles.map(|(p50, p99)| (p50 / 1000.0, p99 / 1000.0)),
                    success_ratio: v.success_rate,
                    inflight: v.inflight(),
                    slots: v.slots.limit(),
                    calls: (c.success, c.failures(), c.http_4xx),
                }
            })
            .collect();
        render(&mut out, &samples, omitted);
        out
    }
}
