//! Feeding the status page's history ([`crate::history`]): every `history.period` the
//! supervisor reads each pair's counters and median latency from its view and each
//! capability's queue, and records them; `GET /admin/history` reads them back.

use super::*;
use crate::history::{CapabilityReading, HistoryReport, PairReading};

impl Supervisor {
    /// Takes one sample of every pair on a board and every registered capability.
    pub(super) fn sample_history(&mut self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last_sample);
        self.last_sample = now;
        let pairs: Vec<(PairKey, PairReading)> = self
            .pairs
            .iter()
            .filter(|(_, e)| e.on_board)
            .map(|(k, e)| {
                let v = e.view.read();
                let reading = PairReading {
                    success: v.counters.success,
                    failures: v.counters.failures(),
                    p50_ms: v.latency_percentiles.map(|p| p.0),
                };
                (k.clone(), reading)
            })
            .collect();
        let capabilities: Vec<(Capability, CapabilityReading)> = self
            .registered
            .iter()
            .map(|c| {
                let reading = self.scoreboard.queue(c).map_or_else(CapabilityReading::default, |q| {
                    let r = q.report();
                    CapabilityReading {
                        queue_depth: r.depth as u64,
                        dispatched: r.counts.dispatched,
                        wait_ms_total: r.counts.wait_ms_total,
                    }
                });
                (c.clone(), reading)
            })
            .collect();
        self.history.record(crate::clock::unix_ms_now(), elapsed, &pairs, &capabilities);
    }
}

/// Asks for the status page's history.
#[derive(Message)]
#[rtype(result = "HistoryReport")]
pub struct GetHistory;

impl Handler<GetHistory> for Supervisor {
    type Result = MessageResult<GetHistory>;

    fn handle(&mut self, _msg: GetHistory, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.history.report())
    }
}
