//! A stream's data lines (the runner's `-data` channel, JSON lines) on their way to `/data`
//! subscribers: a bounded broadcast. A subscriber that falls behind skips lines (counted) rather
//! than holding memory; the feed lives as long as the stream, across swaps (go-livepeer's `/data`
//! dies at the first swap, the 3.6a correction), and its end is every subscriber's end event.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// The feed of one stream.
#[derive(Debug)]
pub(crate) struct DataFeed {
    tx: Mutex<Option<broadcast::Sender<Bytes>>>,
    max_line: usize,
    /// Lines received.
    pub(crate) lines: AtomicU64,
    /// Lines dropped: over `max_line` bytes.
    pub(crate) too_long: AtomicU64,
    /// Lines subscribers skipped because they fell behind.
    pub(crate) skipped: AtomicU64,
}

impl DataFeed {
    /// A feed keeping `buffer` lines of at most `max_line` bytes for subscribers.
    pub(crate) fn new(buffer: usize, max_line: usize) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Self {
            tx: Mutex::new(Some(tx)),
            max_line,
            lines: AtomicU64::new(0),
            too_long: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Takes one segment of the data channel: each non-empty line goes to the subscribers.
    /// Returns the lines taken.
    pub(crate) fn push_segment(&self, body: &Bytes) -> u64 {
        let guard = self.tx.lock();
        let Some(tx) = guard.as_ref() else { return 0 };
        let mut n = 0;
        let mut start = 0;
        for (i, b) in body.iter().enumerate().chain(std::iter::once((body.len(), &b'\n'))) {
            if *b != b'\n' {
                continue;
            }
            let line = body.slice(start..i);
            start = i + 1;
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            if line.len() > self.max_line {
                self.too_long.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let end = line.len() - (line.len() - line.trim_ascii_end().len());
            // No subscriber is not an error: the line is simply not kept.
            let _ = tx.send(line.slice(..end));
            n += 1;
        }
        self.lines.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// A new subscriber (from the next line), or `None` once the stream ended.
    pub(crate) fn subscribe(&self) -> Option<broadcast::Receiver<Bytes>> {
        self.tx.lock().as_ref().map(broadcast::Sender::subscribe)
    }

    /// Ends the feed: subscribers get their end event.
    pub(crate) fn close(&self) {
        self.tx.lock().take();
    }
}

/// A comment line sent to an idle `/data` subscriber, so proxies in between keep it open.
const KEEPALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// The SSE body of `/data` for subscriber `rx` of `stream`'s feed (`None`: the feed is closed):
/// each line as `data: <line>` (go-livepeer's framing), lines skipped by a lagging subscriber
/// announced as a comment, and at the end `event: end` with `{"type":"stream_ended"}` and the
/// reason (go-livepeer sends that event with literal backslash-n's, a bug).
pub(crate) fn sse(
    stream: std::sync::Arc<super::Stream>,
    rx: Option<broadcast::Receiver<Bytes>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures_util::stream::unfold((stream, rx, false), |(stream, mut rx, done)| async move {
        if done {
            return None;
        }
        let Some(r) = rx.as_mut() else {
            return Some((Ok(end_event(&stream)), (stream, None, true)));
        };
        let frame = tokio::select! {
            got = r.recv() => match got {
                Ok(line) => {
                    let mut f = Vec::with_capacity(line.len() + 8);
                    f.extend_from_slice(b"data: ");
                    f.extend_from_slice(&line);
                    f.extend_from_slice(b"\n\n");
                    Bytes::from(f)
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    if let Some(feed) = stream.data.as_ref() {
                        feed.skipped.fetch_add(n, Ordering::Relaxed);
                    }
                    Bytes::from(format!(": {n} lines skipped (this subscriber fell behind)\n\n"))
                }
                Err(broadcast::error::RecvError::Closed) => return Some((Ok(end_event(&stream)), (stream, None, true))),
            },
            () = tokio::time::sleep(KEEPALIVE_EVERY) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(frame), (stream, rx, false)))
    })
}

fn end_event(stream: &super::Stream) -> Bytes {
    let reason = stream.end_reason().map(|r| r.describe()).unwrap_or_else(|| "stream ended".into());
    let data = serde_json::json!({"type": "stream_ended", "reason": reason});
    Bytes::from(format!("event: end\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn lines_reach_subscribers_and_the_end_is_seen() {
        let feed = DataFeed::new(8, 16);
        let mut rx = feed.subscribe().expect("open");
        let n = feed
            .push_segment(&Bytes::from_static(b"{\"a\":1}\n\n{\"b\":2}\r\n{\"toolongtoolongtoolong\":1}\n{\"c\":3}"));
        assert_eq!(n, 3);
        assert_eq!(rx.recv().await.expect("line"), Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(rx.recv().await.expect("line"), Bytes::from_static(b"{\"b\":2}"));
        assert_eq!(rx.recv().await.expect("line"), Bytes::from_static(b"{\"c\":3}"));
        assert_eq!(feed.too_long.load(Ordering::Relaxed), 1);
        feed.close();
        assert!(rx.recv().await.is_err(), "closed");
        assert!(feed.subscribe().is_none());
    }

    #[actix_rt::test]
    async fn a_slow_subscriber_skips_instead_of_holding_memory() {
        let feed = DataFeed::new(2, 64);
        let mut rx = feed.subscribe().expect("open");
        for i in 0..5 {
            feed.push_segment(&Bytes::from(format!("{{\"n\":{i}}}")));
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(3))));
        assert_eq!(rx.recv().await.expect("line"), Bytes::from_static(b"{\"n\":3}"));
    }
}
