//! A stream's life as a plain state machine: starting (looking for an orchestrator that
//! accepts it), running on one, swapping to another after a trigger, ended with a reason. The
//! stream's task drives it; it decides whether a trigger swaps or ends the stream (the swap
//! bound) and keeps the history the admin API shows. No clock of its own: instants come in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Swaps kept in a stream's history (the count goes on).
const HISTORY: usize = 32;

/// Why a stream left an orchestrator. Each is counted (`byoc_gateway_stream_swaps_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SwapReason {
    /// No event from the runner for the event timeout (go-livepeer: 30 s).
    EventsTimeout,
    /// A channel answered 404.
    ChannelGone,
    /// A channel was closed.
    ChannelClosed,
    /// Reads or writes of a channel kept failing past the retry bound.
    ChannelFailing,
    /// More ingress segments in flight than the limit (go-livepeer's slow-orchestrator rule).
    IngressBackedUp,
    /// No egress segment for the output timeout while ingress flowed.
    NoOutput,
    /// The orchestrator refused a stream payment.
    PaymentRefused,
    /// A candidate refused the stream's start (the next one is tried).
    StartRefused,
}

impl SwapReason {
    /// Every reason, for metrics registered at zero.
    pub const ALL: [SwapReason; 8] = [
        SwapReason::EventsTimeout,
        SwapReason::ChannelGone,
        SwapReason::ChannelClosed,
        SwapReason::ChannelFailing,
        SwapReason::IngressBackedUp,
        SwapReason::NoOutput,
        SwapReason::PaymentRefused,
        SwapReason::StartRefused,
    ];

    /// Stable name (metric label, admin view).
    pub fn as_str(self) -> &'static str {
        match self {
            SwapReason::EventsTimeout => "events-timeout",
            SwapReason::ChannelGone => "channel-gone",
            SwapReason::ChannelClosed => "channel-closed",
            SwapReason::ChannelFailing => "channel-failing",
            SwapReason::IngressBackedUp => "ingress-backed-up",
            SwapReason::NoOutput => "no-output",
            SwapReason::PaymentRefused => "payment-refused",
            SwapReason::StartRefused => "start-refused",
        }
    }
}

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum EndReason {
    /// The client stopped it (`/stop`, or closed its ingress).
    Stopped,
    /// An operator stopped it (`DELETE /admin/streams/{id}`).
    StoppedByOperator,
    /// The gateway shut down.
    Shutdown,
    /// No orchestrator could take it (on start or after a swap), with why.
    NoOrchestrator(String),
    /// It swapped more than the bound within the window.
    TooManySwaps(String),
    /// Payments could not be made within the operator's limits.
    PaymentLimit(String),
}

impl EndReason {
    /// Stable name (metric label).
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Stopped => "stopped",
            EndReason::StoppedByOperator => "stopped-by-operator",
            EndReason::Shutdown => "shutdown",
            EndReason::NoOrchestrator(_) => "no-orchestrator",
            EndReason::TooManySwaps(_) => "too-many-swaps",
            EndReason::PaymentLimit(_) => "payment-limit",
        }
    }

    /// For people: the name and the detail.
    pub fn describe(&self) -> String {
        match self {
            EndReason::Stopped => "stopped by the client".into(),
            EndReason::StoppedByOperator => "stopped by an operator".into(),
            EndReason::Shutdown => "the gateway shut down".into(),
            EndReason::NoOrchestrator(d) => format!("no orchestrator could take the stream: {d}"),
            EndReason::TooManySwaps(d) => format!("too many orchestrator swaps: {d}"),
            EndReason::PaymentLimit(d) => format!("the stream could not be paid for: {d}"),
        }
    }
}

/// Where a stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Looking for a first orchestrator.
    Starting,
    /// Running on this orchestrator.
    Running(String),
    /// Left an orchestrator, looking for the next.
    Swapping(SwapReason),
    /// Over.
    Ended(EndReason),
}

impl State {
    /// Stable name (admin view).
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running(_) => "running",
            State::Swapping(_) => "swapping",
            State::Ended(_) => "ended",
        }
    }
}

/// One swap, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Swap {
    /// Unix time in milliseconds.
    pub at_unix_ms: u64,
    /// The orchestrator left.
    pub from: String,
    /// Why.
    pub reason: SwapReason,
    /// What the trigger said.
    pub detail: String,
}

/// What a trigger does to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave the orchestrator and look for another.
    Swap,
    /// End the stream (the swap bound is passed).
    End(EndReason),
}

/// The swap bound: at most `max_swaps` swaps within `window` (go-livepeer ends a stream that
/// swaps a third time within a minute of the last swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapBound {
    /// Swaps allowed within the window.
    pub max_swaps: u32,
    /// The window.
    pub window: Duration,
}

impl Default for SwapBound {
    fn default() -> Self {
        Self { max_swaps: 3, window: Duration::from_secs(60) }
    }
}

/// A stream's state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    bound: SwapBound,
    /// When recent swaps happened (within the window).
    recent: VecDeque<Instant>,
    history: VecDeque<Swap>,
    swaps: u64,
    refusals: u64,
}

impl Machine {
    /// A stream starting.
    pub fn new(bound: SwapBound) -> Self {
        Self { state: State::Starting, bound, recent: VecDeque::new(), history: VecDeque::new(), swaps: 0, refusals: 0 }
    }

    /// Where it is.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Swaps so far.
    pub fn swaps(&self) -> u64 {
        self.swaps
    }

    /// Candidates that refused its start so far.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// The last swaps, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Swap> {
        self.history.iter()
    }

    /// Whether it is over.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended(_))
    }

    /// An orchestrator accepted the stream.
    pub fn accepted(&mut self, orchestrator: &str) {
        if !self.is_ended() {
            self.state = State::Running(orchestrator.to_string());
        }
    }

    /// A candidate refused the start (counted; the next one is tried).
    pub fn refused(&mut self) {
        self.refusals += 1;
    }

    /// A trigger fired on the orchestrator running the stream at `now`: swap, or end past the
    /// bound. The swap is in the history either way.
    pub fn trigger(&mut self, reason: SwapReason, detail: &str, now: Instant, at_unix_ms: u64) -> Decision {
        if self.is_ended() {
            return Decision::End(match &self.state {
                State::Ended(r) => r.clone(),
                _ => EndReason::Stopped,
            });
        }
        let from = match &self.state {
            State::Running(o) => o.clone(),
            _ => String::new(),
        };
        self.swaps += 1;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Swap { at_unix_ms, from, reason, detail: detail.to_string() });
        while self.recent.front().is_some_and(|t| now.saturating_duration_since(*t) > self.bound.window) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() as u32 > self.bound.max_swaps {
            let why = format!(
                "{} swaps within {:?} (streams.max_swaps = {}), the last: {} ({detail})",
                self.recent.len(),
                self.bound.window,
                self.bound.max_swaps,
                reason.as_str()
            );
            let end = EndReason::TooManySwaps(why);
            self.state = State::Ended(end.clone());
            return Decision::End(end);
        }
        self.state = State::Swapping(reason);
        Decision::Swap
    }

    /// The stream is over (the first reason stays).
    pub fn end(&mut self, reason: EndReason) -> &EndReason {
        if !self.is_ended() {
            self.state = State::Ended(reason);
        }
        match &self.state {
            State::Ended(r) => r,
            // Unreachable: set just above.
            _ => &EndReason::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(max: u32, secs: u64) -> SwapBound {
        SwapBound { max_swaps: max, window: Duration::from_secs(secs) }
    }

    #[test]
    fn a_stream_starts_runs_swaps_and_runs_again() {
        let mut m = Machine::new(SwapBound::default());
        assert_eq!(m.state(), &State::Starting);
        m.refused();
        m.accepted("orch-1");
        assert_eq!(m.state(), &State::Running("orch-1".into()));
        let now = Instant::now();
        assert_eq!(m.trigger(SwapReason::EventsTimeout, "30 s without events", now, 1), Decision::Swap);
        assert_eq!(m.state(), &State::Swapping(SwapReason::EventsTimeout));
        m.accepted("orch-2");
        assert_eq!((m.swaps(), m.refusals()), (1, 1));
        let h: Vec<_> = m.history().collect();
        assert_eq!((h[0].from.as_str(), h[0].reason), ("orch-1", SwapReason::EventsTimeout));
    }

    #[test]
    fn swaps_past_the_bound_within_the_window_end_the_stream() {
        let mut m = Machine::new(bound(2, 60));
        let t0 = Instant::now();
        m.accepted("a");
        assert_eq!(m.trigger(SwapReason::ChannelGone, "", t0, 0), Decision::Swap);
        m.accepted("b");
        assert_eq!(m.trigger(SwapReason::ChannelGone, "", t0 + Duration::from_secs(1), 0), Decision::Swap);
        m.accepted("c");
        let d = m.trigger(SwapReason::NoOutput, "stalled", t0 + Duration::from_secs(2), 0);
        assert!(
            matches!(&d, Decision::End(EndReason::TooManySwaps(w)) if w.contains("3 swaps") && w.contains("no-output")),
            "{d:?}"
        );
        assert!(m.is_ended());
        // Once ended, the first reason stays.
        assert_eq!(m.end(EndReason::Stopped).as_str(), "too-many-swaps");
    }

    #[test]
    fn swaps_spread_out_never_reach_the_bound() {
        let mut m = Machine::new(bound(1, 60));
        let t0 = Instant::now();
        for i in 0..10u64 {
            m.accepted("x");
            let d = m.trigger(SwapReason::EventsTimeout, "", t0 + Duration::from_secs(61 * i), 0);
            assert_eq!(d, Decision::Swap, "swap {i}");
        }
        assert_eq!(m.swaps(), 10);
        assert!(m.history().count() <= HISTORY);
    }

    #[test]
    fn the_history_is_bounded_and_the_count_goes_on() {
        let mut m = Machine::new(bound(u32::MAX, 1));
        let t0 = Instant::now();
        for i in 0..100u64 {
            m.accepted("x");
            m.trigger(SwapReason::ChannelClosed, "", t0 + Duration::from_secs(i), i);
        }
        assert_eq!((m.swaps(), m.history().count()), (100, HISTORY));
        assert_eq!(m.history().next().map(|s| s.at_unix_ms), Some(100 - HISTORY as u64));
    }

    #[test]
    fn names_are_stable() {
        let names: Vec<&str> = SwapReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, crate::metrics::STREAM_SWAP_REASONS, "the metric's label values");
        assert_eq!(EndReason::NoOrchestrator("x".into()).as_str(), "no-orchestrator");
        assert!(EndReason::NoOrchestrator("all full".into()).describe().contains("all full"));
        assert_eq!(State::Swapping(SwapReason::NoOutput).as_str(), "swapping");
    }
}
