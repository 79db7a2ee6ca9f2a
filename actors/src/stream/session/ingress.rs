//! Ingress: the stream's ingress channel, from its live edge, to the orchestrator, each segment
//! relayed chunk by chunk as it arrives on a POST of its own (go-livepeer's publisher: the next
//! segment's POST is preconnected).
//!
//! go-livepeer's rules, kept: a segment is retried only while nothing of it was sent and the next
//! one has not begun (otherwise the rest is dropped); more than `streams.max_inflight_segments`
//! segments on their way at once means the orchestrator is not taking them (its slow-orchestrator
//! rule, [`InFlight`]), which moves the stream.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Pump;
use crate::protocol::trickle::publisher::{Opener, Post, PublishError, Publisher};
use crate::protocol::trickle::window::{Channel, ReadStart, SegmentReader};
use crate::protocol::trickle::{CURRENT, NEXT};
use crate::stream::machine::SwapReason;

/// Pause before a segment's POST is opened again (go-livepeer: 250 ms).
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Segments on their way to the orchestrator (go-livepeer's `SlowOrchChecker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InFlight {
    begun: u64,
    done: u64,
    max: u64,
}

impl InFlight {
    /// At most `max` segments on their way.
    pub(crate) fn new(max: u64) -> Self {
        Self { begun: 0, done: 0, max: max.max(1) }
    }

    /// A segment begins: its number (from 1), or `None` when `max` are already on their way (the
    /// orchestrator is not taking them).
    pub(crate) fn begin(&mut self) -> Option<u64> {
        if self.begun >= self.done + self.max {
            return None;
        }
        self.begun += 1;
        Some(self.begun)
    }

    /// A segment is through (or dropped).
    pub(crate) fn end(&mut self) {
        self.done += 1;
    }

    /// The number of the last segment begun.
    pub(crate) fn current(&self) -> u64 {
        self.begun
    }
}

pub(super) async fn run(pump: Pump, url: String, input: Arc<Channel>) {
    let mut publisher = Publisher::new(pump.client.clone(), url, "video/MP2T", true);
    let inflight = Rc::new(Cell::new(InFlight::new(pump.settings.max_inflight_segments)));
    let mut seq = NEXT;
    loop {
        let mut reader = match input.read(seq) {
            ReadStart::Segment { reader, .. } => reader,
            // The client ended its ingress (the stream is being stopped): so does the gateway.
            ReadStart::Missing { closed: true, .. } => return publisher.close().await,
            // Fell out of the window: on to the latest segment begun.
            ReadStart::Missing { .. } => {
                seq = CURRENT;
                continue;
            }
        };
        // A segment begins with its first byte. One that ended empty (the client skipped its
        // number, or dropped it) is passed over: on to the latest begun if the client went
        // further, to the next otherwise.
        let Some(first) = reader.next().await else {
            let latest = input.stats().next - 1;
            seq = if latest > reader.seq() { latest } else { reader.seq() + 1 };
            continue;
        };
        seq = reader.seq() + 1;
        pump.stream.activity.lock().last_input = Some(Instant::now());
        let mut slow = inflight.get();
        let Some(nth) = slow.begin() else {
            pump.trigger(
                SwapReason::IngressBackedUp,
                format!(
                    "{} ingress segments on their way at once (streams.max_inflight_segments): the orchestrator is not taking them",
                    pump.settings.max_inflight_segments
                ),
            );
            return;
        };
        inflight.set(slow);
        let post = publisher.begin();
        let opener = publisher.opener();
        let (pump, inflight) = (pump.clone(), inflight.clone());
        actix::spawn(async move {
            relay(&pump, post, opener, first, reader, nth, &inflight).await;
            let mut s = inflight.get();
            s.end();
            inflight.set(s);
        });
    }
}

/// Relays one segment.
async fn relay(
    pump: &Pump,
    mut post: Post,
    opener: Opener,
    first: Bytes,
    mut reader: SegmentReader,
    nth: u64,
    inflight: &Rc<Cell<InFlight>>,
) {
    let counters = &pump.stream.counters;
    let t0 = Instant::now();
    let mut next = Some(first);
    loop {
        let (seq, sent) = match send(&mut post, &mut next, &mut reader, pump).await {
            Ok(()) => {
                let (seq, sent) = (post.seq(), post.written());
                match post.finish().await {
                    Ok(_) => {
                        counters.segments_in.fetch_add(1, Ordering::Relaxed);
                        metrics::histogram!(crate::metrics::STREAM_SEGMENT_SECONDS, "direction" => "in")
                            .record(t0.elapsed().as_secs_f64());
                        return;
                    }
                    Err(e) => (seq, failed(pump, &opener, e, sent).await),
                }
            }
            Err(e) => {
                let (seq, sent) = (post.seq(), post.written());
                drop(post);
                (seq, failed(pump, &opener, e, sent).await)
            }
        };
        let Some(error) = sent else { return };
        // go-livepeer's rule: again only while nothing of it went and the next has not begun.
        if inflight.get().current() != nth {
            counters.in_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(stream = %pump.stream.id, seq, error = %error, "ingress segment dropped");
            return;
        }
        tracing::debug!(stream = %pump.stream.id, seq, error = %error, "ingress segment failed before any byte went; again");
        tokio::time::sleep(RETRY_PAUSE).await;
        if inflight.get().current() != nth {
            counters.in_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        post = opener.open(seq);
        reader = reader.restart();
        next = None;
    }
}

/// Sends the segment's chunks to `post`, the pending `first` one first.
async fn send(
    post: &mut Post,
    first: &mut Option<Bytes>,
    reader: &mut SegmentReader,
    pump: &Pump,
) -> Result<(), PublishError> {
    loop {
        let chunk = match first.take() {
            Some(c) => c,
            None => match reader.next().await {
                Some(c) => c,
                None => return Ok(()),
            },
        };
        let n = chunk.len() as u64;
        post.write(chunk).await?;
        pump.stream.counters.bytes_in.fetch_add(n, Ordering::Relaxed);
    }
}

/// A failed POST: a vanished channel moves the stream (`None`), a failure after part of the
/// segment went drops it (`None`); a failure before any byte went may be tried again (`Some`).
async fn failed(pump: &Pump, opener: &Opener, e: PublishError, sent: u64) -> Option<PublishError> {
    let e = match e {
        PublishError::Transport(_) => opener.explain(e).await,
        other => other,
    };
    if let PublishError::End(end) = &e {
        pump.channel_ended("ingress", end);
        return None;
    }
    if sent > 0 {
        pump.stream.counters.in_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::info!(stream = %pump.stream.id, error = %e, "ingress segment dropped after part of it went");
        return None;
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fourth_segment_on_its_way_is_refused() {
        let mut f = InFlight::new(3);
        assert_eq!((f.begin(), f.begin(), f.begin()), (Some(1), Some(2), Some(3)));
        assert_eq!(f.begin(), None, "three on their way: the orchestrator is slow");
        f.end();
        assert_eq!(f.begin(), Some(4));
        assert_eq!(f.current(), 4);
        let mut one = InFlight::new(0);
        assert_eq!(one.begin(), Some(1), "at least one");
        assert_eq!(one.begin(), None);
    }
}
