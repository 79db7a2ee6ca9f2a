//! Subscribing to a trickle channel (`trickle_subscriber.go`): `GET {channel}/{seq}` from the
//! live edge, each answer's headers arriving with the segment's first byte.
//!
//! As soon as a segment's headers arrive the GET of the next one is opened (preconnect), so it
//! is waiting on the server when that segment begins; a GET still waiting after 20 s is opened
//! again (go-livepeer's refresh, so idle connections are not cut by something in between). The
//! position and the failure bound are a [`Cursor`].

use std::pin::Pin;
use std::time::Duration;

use awc::error::PayloadError;
use awc::http::header::HeaderMap;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use tokio::task::JoinHandle;

use super::cursor::{Cursor, Step};
use super::{ChannelEnd, ReadAnswer};
use crate::protocol::client::map_send_error;

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;
type Answer = Result<(u16, HeaderMap, Chunks), String>;

/// A GET waiting for its headers is opened again after this long (go-livepeer's
/// `preconnectRefreshTimeout`).
const REFRESH: Duration = Duration::from_secs(20);

/// A channel's subscriber.
pub(crate) struct Subscriber {
    client: awc::Client,
    url: String,
    cursor: Cursor,
    pending: Option<(i64, JoinHandle<Answer>)>,
    retry_pause: Duration,
    max_segment_bytes: usize,
}

/// One segment's body, read as it arrives.
pub(crate) struct SegmentBody {
    /// Its sequence number (as the server said, or as asked).
    pub(crate) seq: i64,
    chunks: Chunks,
    read: usize,
    limit: usize,
}

impl SegmentBody {
    /// The next chunk; `Ok(None)` at the segment's end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self.chunks.next().await {
            None => Ok(None),
            Some(Ok(c)) => {
                self.read += c.len();
                if self.read > self.limit {
                    return Err(format!("segment {} is over the limit of {} bytes", self.seq, self.limit));
                }
                Ok(Some(c))
            }
            Some(Err(e)) => Err(format!("segment {} broke: {e}", self.seq)),
        }
    }

    /// The whole segment (small channels: events, data).
    pub(crate) async fn read_all(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}

impl Subscriber {
    /// A subscriber of `url` from the live edge, giving up after `max_failures` failed reads in a
    /// row, `retry_pause` apart.
    pub(crate) fn new(
        client: awc::Client,
        url: String,
        max_failures: u32,
        retry_pause: Duration,
        max_segment_bytes: usize,
    ) -> Self {
        Self { client, url, cursor: Cursor::new(max_failures), pending: None, retry_pause, max_segment_bytes }
    }

    /// The next segment, or why the channel is over for this subscriber.
    pub(crate) async fn next(&mut self) -> Result<SegmentBody, ChannelEnd> {
        loop {
            let asked = self.cursor.seq();
            let handle = match self.pending.take() {
                Some((seq, h)) if seq == asked => h,
                other => {
                    if let Some((_, h)) = other {
                        h.abort();
                    }
                    self.connect(asked)
                }
            };
            let answer = self.wait(asked, handle).await;
            let (status, headers, chunks) = match answer {
                Ok(a) => a,
                Err(e) => match self.cursor.on_error(&e) {
                    Step::End(end) => return Err(end),
                    _ => {
                        tokio::time::sleep(self.retry_pause).await;
                        continue;
                    }
                },
            };
            let answer = ReadAnswer::classify(status, &headers);
            match self.cursor.on_answer(answer) {
                Step::Read => {
                    let seq = match answer {
                        ReadAnswer::Segment(Some(s)) => s,
                        _ => asked,
                    };
                    let next = self.cursor.seq();
                    self.pending = Some((next, self.connect(next)));
                    return Ok(SegmentBody { seq, chunks, read: 0, limit: self.max_segment_bytes });
                }
                // A 470 is not the channel failing: ask for the latest at once.
                Step::Retry if matches!(answer, ReadAnswer::Skip(_)) => {}
                Step::Retry => tokio::time::sleep(self.retry_pause).await,
                Step::End(end) => return Err(end),
            }
        }
    }

    /// The body of segment `seq` broke before its end: it is read again next (or the channel is
    /// over when reads keep failing).
    pub(crate) fn broken(&mut self, seq: i64, error: &str) -> Result<(), ChannelEnd> {
        if let Some((_, h)) = self.pending.take() {
            h.abort();
        }
        match self.cursor.on_broken_body(seq, error) {
            Step::End(end) => Err(end),
            _ => Ok(()),
        }
    }

    fn connect(&self, seq: i64) -> JoinHandle<Answer> {
        let req = self.client.get(format!("{}/{seq}", self.url));
        actix::spawn(async move {
            let resp = req.send().await.map_err(|e| map_send_error(e, REFRESH).to_string())?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let chunks: Chunks = Box::pin(resp);
            Ok((status, headers, chunks))
        })
    }

    /// Waits for `handle`'s headers, opening the GET again every [`REFRESH`].
    async fn wait(&mut self, seq: i64, mut handle: JoinHandle<Answer>) -> Answer {
        loop {
            match tokio::time::timeout(REFRESH, &mut handle).await {
                Ok(Ok(answer)) => return answer,
                Ok(Err(e)) => return Err(format!("the GET task ended: {e}")),
                Err(_) => {
                    handle.abort();
                    handle = self.connect(seq);
                }
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some((_, h)) = self.pending.take() {
            h.abort();
        }
    }
}
