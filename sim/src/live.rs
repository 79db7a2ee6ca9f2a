//! The orchestrator side of go-livepeer's BYOC streams (`byoc/stream_orchestrator.go`) and the
//! runner behind it:
//!
//! - `calls.rs`: `POST /ai/stream/start`, `/update`, `/stop`, `/payment`, with go-livepeer's checks
//!   (job header, capacity reserved per stream: a full orchestrator answers
//!   `400 No capacity available for capability`; balance: 402) and the faults the knobs ask for;
//! - `trickle.rs`: the trickle server under `/ai/trickle/` (go-livepeer's rules, served from the
//!   gateway's own channel implementation, `byoc_actors::protocol::trickle`);
//! - `runner.rs`: a runner per stream that reads the control channel (params, keep-alives), emits
//!   status events and data lines, turns each ingress segment into an egress segment (a marker
//!   line, then the input's bytes), and is debited over time when the stream is priced.
//!
//! Faults: `stream_start_status`, `stream_start_hang`, `stream_events_stop`,
//! `stream_ingress_stall`, `stream_output_stop`, `stream_payment_status` (knobs), channels that
//! vanish ([`SimState::vanish_streams`], `POST /sim/streams/vanish`) and a crash
//! ([`crate::SimHandle::stop`]).

mod calls;
mod runner;
mod transform;
mod trickle;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use byoc_actors::protocol::trickle::window::{Channel, Limits};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;

pub(crate) use calls::{payment, start, stop, update};
pub use runner::marker as runner_marker;
pub(crate) use trickle::{channel_delete, channel_get, channel_next, channel_post, segment_delete};

use crate::state::{InflightGuard, SimState};

/// Where the trickle server lives (go-livepeer's `-trickleBasePath` default).
pub(crate) const TRICKLE_PATH: &str = "/ai/trickle";
/// Entries kept in the stats' recent lists.
const RECENT: usize = 32;

/// What the simulator's streams did (`GET /sim/state` `streams`, [`SimState::live_stats`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveStats {
    /// Starts accepted.
    pub starts: u64,
    /// Starts refused (any status).
    pub refused: u64,
    /// Streams running now.
    pub live: u64,
    /// `/ai/stream/stop` calls received.
    pub stops: u64,
    /// Their bodies (the reason on a swap or at shutdown), newest last.
    pub stop_bodies: VecDeque<String>,
    /// `/ai/stream/update` calls received.
    pub updates: u64,
    /// Params the runners read from their control channels (not keep-alives), newest last.
    pub control_params: VecDeque<String>,
    /// Keep-alives the runners read.
    pub keepalives: u64,
    /// Stream payments accepted.
    pub payments: u64,
    /// Stream payments refused.
    pub payment_refusals: u64,
    /// Ingress segments the runners read.
    pub ingress_segments: u64,
    /// Egress segments the runners wrote.
    pub egress_segments: u64,
    /// Events published.
    pub events: u64,
    /// Data lines published.
    pub data_lines: u64,
    /// Streams removed for want of balance.
    pub removed_unpaid: u64,
    /// The last start's body.
    pub last_start_body: Option<String>,
}

fn push(list: &mut VecDeque<String>, item: String) {
    if list.len() == RECENT {
        list.pop_front();
    }
    list.push_back(item);
}

/// One running stream.
pub(crate) struct LiveStream {
    pub(crate) capability: String,
    pub(crate) channels: Vec<String>,
    pub(crate) params: Arc<Mutex<Option<serde_json::Value>>>,
    runner: Option<JoinHandle<()>>,
    _slot: InflightGuard,
}

/// The simulator's streams and trickle channels.
#[derive(Default)]
pub(crate) struct Live {
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    streams: Mutex<HashMap<String, LiveStream>>,
    pub(crate) stats: Mutex<LiveStats>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("stats", &*self.stats.lock()).finish()
    }
}

impl Live {
    fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.lock().get(name).cloned()
    }

    fn create(&self, name: &str) -> Arc<Channel> {
        let ch = Channel::new(Limits { window: 5, max_segment_bytes: 64 << 20 });
        self.channels.lock().insert(name.to_string(), ch.clone());
        ch
    }

    fn remove_channel(&self, name: &str) -> bool {
        match self.channels.lock().remove(name) {
            Some(ch) => {
                ch.close();
                true
            }
            None => false,
        }
    }

    /// Ends a stream: its runner stops, its channels close and vanish, its slot frees.
    pub(crate) fn remove(&self, id: &str) -> bool {
        let Some(mut s) = self.streams.lock().remove(id) else { return false };
        if let Some(r) = s.runner.take() {
            r.abort();
        }
        for name in &s.channels {
            self.remove_channel(name);
        }
        let mut stats = self.stats.lock();
        stats.live = stats.live.saturating_sub(1);
        true
    }
}

impl SimState {
    /// What the simulator's streams did.
    pub fn live_stats(&self) -> LiveStats {
        self.live.stats.lock().clone()
    }

    /// Ids of the streams running here.
    pub fn live_streams(&self) -> Vec<String> {
        self.live.streams.lock().keys().cloned().collect()
    }

    /// The params the runner of stream `id` has now (from its start, an update or its control
    /// channel).
    pub fn live_params(&self, id: &str) -> Option<serde_json::Value> {
        self.live.streams.lock().get(id).and_then(|s| s.params.lock().clone())
    }

    /// Every stream here loses its channels at once (they answer 404 from now on), as an
    /// orchestrator that dropped them; the streams' runners stop.
    pub fn vanish_streams(&self) -> usize {
        let ids: Vec<String> = self.live.streams.lock().keys().cloned().collect();
        for id in &ids {
            self.live.remove(id);
        }
        ids.len()
    }
}
