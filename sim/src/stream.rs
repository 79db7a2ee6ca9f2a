//! Server-Sent Events answers, as go-livepeer's orchestrator relays a worker's (lingering
//! after `[DONE]` when asked to, as it does).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::knobs::Knobs;
use crate::state::{InflightGuard, SimState};

/// The simulator's stream error (a broken stream aborts the connection).
#[derive(Debug, thiserror::Error)]
#[error("simulated stream failure")]
pub(crate) struct StreamFailure;
/// A `text/event-stream` answer as go-livepeer's orchestrator relays a worker's: `data:` lines,
/// `[DONE]` at the end, `Livepeer-Payment-Balance` (its SSE name for the balance header). With
/// `linger` (the job's time left), it then writes blank lines until that time is up, as
/// go-livepeer's orchestrator does, holding the job's slot: one every few milliseconds after
/// `[DONE]` (`sse_linger`), or, with `sse_flood`, no `[DONE]` and 4 KiB of them at a time as
/// fast as the connection takes them.
pub(crate) fn event_stream(
    state: Arc<SimState>,
    knobs: &Knobs,
    job_id: String,
    linger: Option<Duration>,
    guard: InflightGuard,
) -> HttpResponse {
    let (events, interval, hold, fail_after, flood) = (
        knobs.sse_events,
        Duration::from_millis(knobs.sse_interval_ms),
        knobs.sse_hold,
        knobs.sse_fail_after,
        knobs.sse_flood,
    );
    let linger_until = linger.map(|d| tokio::time::Instant::now() + d);
    let chunks = futures_util::stream::unfold((0u32, Some(guard)), move |(n, guard)| {
        let state = state.clone();
        let job_id = job_id.clone();
        async move {
            guard.as_ref()?;
            if n > 0 {
                if hold && n == 1 {
                    // Bounded: a test that never releases still ends (the stream is cut).
                    match tokio::time::timeout(Duration::from_secs(30), state.sse_release.acquire()).await {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => return Some((Err(StreamFailure), (n, None))),
                    }
                }
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
            }
            if fail_after == Some(n) {
                return Some((Err(StreamFailure), (n, None)));
            }
            if n > events || (flood && n == events) {
                // Lingering after [DONE]: a blank line every few milliseconds (go-livepeer's
                // writer loop spins on its closed channel) until the job's time is up; flooding,
                // blank lines as fast as the connection takes them.
                let until = linger_until?;
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                if flood {
                    return Some((Ok(web::Bytes::from_static(&[b'\n'; FLOOD_CHUNK])), (n, guard)));
                }
                tokio::time::sleep(LINGER_TICK).await;
                return Some((Ok(web::Bytes::from_static(b"\n")), (n, guard)));
            }
            if n == events {
                if linger_until.is_some() {
                    let done = web::Bytes::from_static(b"data: {\"balance\": 1000}\ndata: [DONE]\n\n");
                    return Some((Ok(done), (n + 1, guard)));
                }
                return Some((Ok(web::Bytes::from_static(b"data: [DONE]\n\n")), (n + 1, None)));
            }
            let event = json!({"n": n, "sim": state.name, "job_id": job_id});
            Some((Ok(web::Bytes::from(format!("data: {event}\n\n"))), (n + 1, guard)))
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("Livepeer-Payment-Balance", "1000"))
        .streaming(chunks)
}
/// Pause between two blank lines of a lingering stream.
const LINGER_TICK: Duration = Duration::from_millis(5);
/// Blank lines per write of a flooding stream.
const FLOOD_CHUNK: usize = 4096;
