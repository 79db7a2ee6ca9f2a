//! An orchestrator's `text/event-stream` answer on its way to the client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use awc::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

use crate::protocol::sse::{SseLines, MAX_BLANK_RUN};

pub(super) type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;

/// The body of an orchestrator's `text/event-stream` answer, relayed line by line as it
/// arrives ([`SseLines`]: it ends at the first `[DONE]` line or after a long run of nothing but
/// blank lines, dropping the upstream connection, and blank-line runs collapse), and ended at
/// its deadline. Whatever is attached with [`EventStream::hold`] (the in-flight
/// count of the call) lives as long as the stream.
pub struct EventStream {
    chunks: Chunks,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    held: Vec<Box<dyn std::any::Any>>,
    // Boxed: it is only used by streams, and every reply carries room for one.
    lines: Box<SseLines>,
    done: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("limit", &self.limit).field("done", &self.done).finish()
    }
}

/// A stream that broke mid-way (the orchestrator went away): the client's connection is closed
/// rather than the stream ended as if complete.
#[derive(Debug, thiserror::Error)]
#[error("the orchestrator's event stream broke: {0}")]
pub struct StreamBroken(String);

impl EventStream {
    pub(super) fn new(chunks: Chunks, limit: Duration) -> Self {
        Self {
            chunks,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            held: Vec::new(),
            lines: Box::default(),
            done: false,
        }
    }

    /// Ends the stream: the upstream response is dropped (closing its connection, which is
    /// what ends the job on go-livepeer's orchestrator) and what was held is released.
    fn end(&mut self) {
        self.done = true;
        self.chunks = Box::pin(futures_util::stream::empty());
        self.held.clear();
    }

    /// Keeps `value` alive until the stream ends or is dropped (the in-flight counts of the
    /// call and of the job).
    pub fn hold(&mut self, value: impl std::any::Any) {
        self.held.push(Box::new(value));
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, StreamBroken>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if self.deadline.as_mut().poll(cx).is_ready() {
                // The job's timeout bounds the stream, as go-livepeer's does. A comment line
                // (which SSE parsers ignore) says why it ended, for whoever reads the raw stream.
                self.end();
                let note = format!(
                    ": byoc-gateway: stream ended at the job's timeout ({}s: timeout_seconds + 10 s)\n\n",
                    self.limit.as_secs()
                );
                return Poll::Ready(Some(Ok(Bytes::from(note))));
            }
            match self.chunks.as_mut().poll_next(cx) {
                Poll::Ready(None) => {
                    let rest = self.lines.finish();
                    self.end();
                    return Poll::Ready((!rest.is_empty()).then_some(Ok(rest)));
                }
                Poll::Ready(Some(Err(e))) => {
                    self.end();
                    return Poll::Ready(Some(Err(StreamBroken(e.to_string()))));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    let mut out = self.lines.feed(&chunk);
                    if self.lines.is_done() {
                        self.end();
                    } else if self.lines.is_flooded() {
                        // Nothing but blank lines for a long run: go-livepeer's orchestrator
                        // spinning after its worker's stream ended. Over, as at [DONE]; a
                        // comment line says why.
                        self.end();
                        tracing::warn!(
                            bytes = MAX_BLANK_RUN,
                            "event stream ended: the orchestrator sent only blank lines; dropped it"
                        );
                        let note = format!(
                            ": byoc-gateway: stream ended: the orchestrator sent only blank lines ({MAX_BLANK_RUN} bytes in a row)\n\n"
                        );
                        out = [&out[..], note.as_bytes()].concat().into();
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                    // Nothing to relay (blank lines dropped, a line not ended yet): read on.
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
