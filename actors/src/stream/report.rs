//! What the admin API (`GET /admin/streams`, `/admin/streams/{id}`) and the status page show of a
//! stream; also the `gateway` part of its `/status`.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::machine::{EndReason, State, Swap};
use super::request::{Features, StreamUrls};
use super::Stream;

/// A stream's payments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PaymentCounts {
    /// Payments sent (with the start, and over time).
    pub sent: u64,
    /// Rounds where nothing was due.
    pub not_due: u64,
    /// Payments the orchestrator refused.
    pub refused: u64,
    /// The last payment problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The orchestrator running a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrchestratorRef {
    /// Its id in the registry.
    pub id: String,
    /// Its `service_addr`.
    pub url: String,
}

/// Media through one of a stream's directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MediaCounts {
    /// Segments relayed.
    pub segments: u64,
    /// Bytes relayed.
    pub bytes: u64,
    /// Segments dropped (a failure after part of it went, or over the size limit).
    pub dropped: u64,
    /// Bytes the stream's channel holds now (its window).
    pub held_bytes: usize,
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ended {
    /// Why.
    pub reason: EndReason,
    /// Said for people.
    pub message: String,
    /// When (Unix ms).
    pub at_unix_ms: Option<u64>,
}

/// One stream, for operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamReport {
    /// The stream's id.
    pub stream_id: String,
    /// Its capability.
    pub capability: String,
    /// `starting`, `running`, `swapping` or `ended`.
    pub state: &'static str,
    /// The orchestrator running it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<OrchestratorRef>,
    /// The media it was asked for.
    pub features: Features,
    /// When it was started (Unix ms).
    pub created_at_unix_ms: u64,
    /// Seconds since.
    pub age_seconds: f64,
    /// Swaps so far.
    pub swaps: u64,
    /// The last swaps, oldest first.
    pub swap_history: Vec<Swap>,
    /// Candidates that refused to start it (at its start and after swaps).
    pub start_refusals: u64,
    /// Ingress: client to orchestrator.
    pub ingress: MediaCounts,
    /// Egress: orchestrator to client.
    pub egress: MediaCounts,
    /// Data lines received.
    pub data_lines: u64,
    /// Data lines `/data` subscribers skipped (they fell behind).
    pub data_lines_skipped: u64,
    /// Events received from the runner (all its orchestrators).
    pub events: u64,
    /// Events dropped (not JSON objects, or too large).
    pub events_dropped: u64,
    /// Milliseconds since the last event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_age_ms: Option<u64>,
    /// Its payments.
    pub payments: PaymentCounts,
    /// How it ended, once it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
    /// The URLs its client was given.
    pub urls: StreamUrls,
    /// Its RTMP ingest and outputs.
    pub media: super::EdgeReport,
}

/// The report of `s`.
pub(crate) fn report(s: &Stream) -> StreamReport {
    let c = &s.counters;
    let held = |ch: &Option<std::sync::Arc<crate::protocol::trickle::window::Channel>>| {
        ch.as_ref().map_or(0, |c| c.stats().held_bytes)
    };
    let (events, events_dropped, last_event) = {
        let st = s.status.lock();
        (st.events, st.dropped, st.last_event)
    };
    let snap = s.snapshot.lock();
    let ended = match snap.machine.state() {
        State::Ended(r) => Some(Ended { reason: r.clone(), message: r.describe(), at_unix_ms: snap.ended_at_unix_ms }),
        _ => None,
    };
    StreamReport {
        stream_id: s.id.clone(),
        capability: s.capability.to_string(),
        state: snap.machine.state().as_str(),
        orchestrator: snap.orchestrator.as_ref().map(|(id, url)| OrchestratorRef { id: id.clone(), url: url.clone() }),
        features: s.features,
        created_at_unix_ms: s.created_unix_ms,
        age_seconds: (s.created.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        swaps: snap.machine.swaps(),
        swap_history: snap.machine.history().cloned().collect(),
        start_refusals: snap.machine.refusals(),
        ingress: MediaCounts {
            segments: c.segments_in.load(Ordering::Relaxed),
            bytes: c.bytes_in.load(Ordering::Relaxed),
            dropped: c.in_dropped.load(Ordering::Relaxed),
            held_bytes: held(&s.ingress),
        },
        egress: MediaCounts {
            segments: c.segments_out.load(Ordering::Relaxed),
            bytes: c.bytes_out.load(Ordering::Relaxed),
            dropped: c.out_dropped.load(Ordering::Relaxed),
            held_bytes: held(&s.egress),
        },
        data_lines: s.data.as_ref().map_or(0, |d| d.lines.load(Ordering::Relaxed)),
        data_lines_skipped: s.data.as_ref().map_or(0, |d| d.skipped.load(Ordering::Relaxed)),
        events,
        events_dropped,
        last_event_age_ms: last_event.map(|t| t.elapsed().as_millis() as u64),
        payments: snap.payments.clone(),
        ended,
        urls: s.urls.clone(),
        media: s.edges.lock().clone(),
    }
}
