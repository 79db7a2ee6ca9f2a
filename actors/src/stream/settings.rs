//! How streams behave: the `[streams]` section (and `limits.max_streams`) as the stream tasks
//! read it, with go-livepeer's defaults where it has one.

use std::collections::HashMap;
use std::time::Duration;

use super::edges::EdgeSettings;
use super::machine::SwapBound;
use crate::capability::Capability;
use crate::protocol::trickle::window;

/// How streams behave (config `[streams]`, and `limits.max_streams`).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Live streams at once, gateway-wide.
    pub max_streams: usize,
    /// No event from the runner for this long moves the stream (go-livepeer: 30 s).
    pub event_timeout: Duration,
    /// No egress segment for this long while ingress flows moves the stream (0: never).
    pub output_timeout: Duration,
    /// Per-capability `(event_timeout, output_timeout)` overrides.
    pub capability_timeouts: HashMap<Capability, (Option<Duration>, Option<Duration>)>,
    /// At most this many swaps within a window; one more ends the stream.
    pub swap_bound: SwapBound,
    /// Candidates tried per placement (at least the capability policy's `max_attempts`).
    pub start_attempts: u32,
    /// How often a running stream's payment is checked (and made when due).
    pub payment_interval: Duration,
    /// Keep-alive period on the control channel (go-livepeer: 10 s).
    pub keepalive: Duration,
    /// Bound on the fresh token asked before a payment.
    pub token_timeout: Duration,
    /// What each of a stream's channels holds (segments kept, largest segment).
    pub channel: window::Limits,
    /// Largest event from the runner.
    pub max_event_bytes: usize,
    /// Data lines kept for `/data` subscribers that lag.
    pub data_buffer_lines: usize,
    /// Largest data line.
    pub max_line_bytes: usize,
    /// Failed reads in a row a channel tolerates.
    pub read_retries: u32,
    /// Pause between two failed reads.
    pub retry_pause: Duration,
    /// Ingress segments on their way to the orchestrator at once before it counts as not taking
    /// them (go-livepeer: 3).
    pub max_inflight_segments: u64,
    /// Ended streams kept for their status.
    pub ended_kept: usize,
    /// How often the watchdogs look.
    pub watch_every: Duration,
    /// Allow cross-origin calls (`OPTIONS` preflight and `Access-Control-Allow-Origin`).
    pub allow_cors: bool,
    /// The media edges (RTMP ingest and outputs).
    pub edges: EdgeSettings,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_streams: 1000,
            event_timeout: Duration::from_secs(30),
            output_timeout: Duration::from_secs(30),
            capability_timeouts: HashMap::new(),
            swap_bound: SwapBound::default(),
            start_attempts: 8,
            payment_interval: Duration::from_secs(30),
            keepalive: Duration::from_secs(10),
            token_timeout: Duration::from_secs(3),
            channel: window::Limits { window: window::DEFAULT_WINDOW, max_segment_bytes: 8 << 20 },
            max_event_bytes: 64 << 10,
            data_buffer_lines: 256,
            max_line_bytes: 64 << 10,
            read_retries: 5,
            retry_pause: Duration::from_millis(300),
            max_inflight_segments: 3,
            ended_kept: 256,
            watch_every: Duration::from_secs(1),
            allow_cors: false,
            edges: EdgeSettings::default(),
        }
    }
}

impl StreamSettings {
    /// The event and output timeouts of `capability`.
    pub(crate) fn timeouts(&self, capability: &Capability) -> (Duration, Duration) {
        let o = self.capability_timeouts.get(capability).copied().unwrap_or_default();
        (o.0.unwrap_or(self.event_timeout), o.1.unwrap_or(self.output_timeout))
    }
}
