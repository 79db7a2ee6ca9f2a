//! Publishing to a trickle channel (`trickle_publisher.go`): each segment is a
//! `POST {channel}/{seq}` whose body is streamed as it comes, numbered from 0.
//!
//! With preconnect on, the POST of the next segment is opened as soon as the current one
//! starts, so its connection (and TLS handshake) is ready when the next segment's first byte
//! arrives: that is go-livepeer's publisher. The control channel, written every 10 s, does
//! without: go-livepeer's server answers a POST whose first byte has not come within 10 s with
//! `100 Continue`, which an HTTP/1.1 client without `Expect` cannot tell from an answer.
//!
//! Every POST closes its connection when done: a `100 Continue` read as the answer (see
//! [`WriteAnswer::classify`]) leaves the real answer unread on it, so it is never reused.
//!
//! A failed POST is told apart from a vanished channel by asking `GET {channel}/next`: 404 is
//! gone, `Lp-Trickle-Closed` closed (awc reads an answer only after the whole body is sent, so a
//! server that refused the POST early is seen as a broken connection).

use std::time::Duration;

use awc::http::header::CONTENT_TYPE;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ChannelEnd, WriteAnswer, CLOSED};
use crate::protocol::client::{excerpt, map_send_error};

/// Chunks queued towards one POST before its writer waits (back-pressure from the server).
const BODY_QUEUE: usize = 8;
/// Bound on the answer once a segment's body is sent, on a `DELETE` and on a probe.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read (go-livepeer's answers are a line of text).
const ANSWER_LIMIT: usize = 64 << 10;

/// Why a segment could not be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PublishError {
    /// The channel is gone or closed.
    #[error("{0}")]
    End(ChannelEnd),
    /// The server answered an error status.
    #[error("the channel answered {0}: {1}")]
    Status(u16, String),
    /// No answer (connect, reset, time-out).
    #[error("{0}")]
    Transport(String),
}

/// A channel's publisher.
pub(crate) struct Publisher {
    opener: Opener,
    next: i64,
    preconnect: bool,
    pending: Option<Post>,
}

/// Opens the POST of one segment of a channel (cloned into the task relaying that segment, which
/// may need to open it again).
#[derive(Clone)]
pub(crate) struct Opener {
    client: awc::Client,
    url: String,
    content_type: &'static str,
}

/// One segment's POST, its body fed chunk by chunk.
pub(crate) struct Post {
    seq: i64,
    body: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    answer: Option<JoinHandle<Result<(WriteAnswer, String), String>>>,
    written: u64,
}

impl Publisher {
    /// A publisher of `url` (the channel, without a sequence number) sending `content_type`
    /// (go-livepeer's sends `video/MP2T` whatever the channel).
    pub(crate) fn new(client: awc::Client, url: String, content_type: &'static str, preconnect: bool) -> Self {
        Self { opener: Opener { client, url, content_type }, next: 0, preconnect, pending: None }
    }

    /// What opens this channel's POSTs.
    pub(crate) fn opener(&self) -> Opener {
        self.opener.clone()
    }

    /// Opens the next segment's POST (the preconnected one when there is one) and, with
    /// preconnect on, the one after.
    pub(crate) fn begin(&mut self) -> Post {
        let post = match self.pending.take() {
            Some(p) => p,
            None => {
                let seq = self.next;
                self.next += 1;
                self.opener.open(seq)
            }
        };
        if self.preconnect {
            let seq = self.next;
            self.next += 1;
            self.pending = Some(self.opener.open(seq));
        }
        post
    }

    /// Publishes one whole segment; a failure before any byte was sent gives its number back,
    /// so the next segment takes it (no gap a reader would wait on). Returns the number written.
    pub(crate) async fn publish(&mut self, data: Bytes) -> Result<i64, PublishError> {
        let mut post = self.begin();
        let seq = post.seq();
        let res = match post.write(data).await {
            Ok(()) => post.finish().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &res {
            if !self.preconnect && self.next == seq + 1 && !matches!(e, PublishError::End(_)) {
                self.next = seq;
            }
            if let PublishError::Transport(_) = e {
                return Err(self.opener.explain(e.clone()).await);
            }
        }
        res
    }

    /// Closes the channel (`DELETE {channel}`), best effort.
    pub(crate) async fn close(&mut self) {
        self.pending = None;
        let req = self.opener.client.delete(&self.opener.url).timeout(ANSWER_TIMEOUT).force_close();
        if let Err(e) = req.send().await {
            tracing::debug!(url = %self.opener.url, error = %e, "trickle channel close failed");
        }
    }
}

impl Opener {
    /// Opens the POST of segment `seq` (again, for a segment whose first attempt failed before any
    /// byte went).
    pub(crate) fn open(&self, seq: i64) -> Post {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(BODY_QUEUE);
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let req = self
            .client
            .post(format!("{}/{seq}", self.url))
            .insert_header((CONTENT_TYPE, self.content_type))
            .force_close();
        let answer = actix::spawn(async move {
            let mut resp = req.send_stream(body).await.map_err(|e| map_send_error(e, ANSWER_TIMEOUT).to_string())?;
            let status = resp.status().as_u16();
            let answer = WriteAnswer::classify(status, resp.headers());
            if let WriteAnswer::Failed(_) = answer {
                let body = resp.body().limit(ANSWER_LIMIT).await.unwrap_or_default();
                return Ok((answer, excerpt(&body)));
            }
            Ok((answer, String::new()))
        });
        Post { seq, body: Some(tx), answer: Some(answer), written: 0 }
    }

    /// Turns a POST that got no answer into the channel's end when `GET {channel}/next` says it
    /// is gone or closed.
    pub(crate) async fn explain(&self, e: PublishError) -> PublishError {
        match probe(&self.client, &self.url).await {
            Some(end) => PublishError::End(end),
            None => e,
        }
    }
}

/// Whether the channel at `url` is gone or closed (`None`: it exists, or no answer).
pub(crate) async fn probe(client: &awc::Client, url: &str) -> Option<ChannelEnd> {
    let resp = client.get(format!("{url}/next")).timeout(ANSWER_TIMEOUT).send().await.ok()?;
    if resp.headers().contains_key(CLOSED) {
        return Some(ChannelEnd::Closed);
    }
    (resp.status().as_u16() == 404).then_some(ChannelEnd::Gone)
}

impl Post {
    /// The segment's sequence number.
    pub(crate) fn seq(&self) -> i64 {
        self.seq
    }

    /// Bytes handed to the POST so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Sends a chunk (waiting while the server is slow to take it). A POST that ended early
    /// reports why.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), PublishError> {
        let n = chunk.len() as u64;
        let sent = match &self.body {
            Some(tx) => tx.send(Ok(chunk)).await.is_ok(),
            None => false,
        };
        if sent {
            self.written += n;
            return Ok(());
        }
        // The request is over before its body: its answer says why.
        self.body = None;
        match self.answer().await {
            Ok(_) => Err(PublishError::Transport("the channel answered before the segment was sent".into())),
            Err(e) => Err(e),
        }
    }

    /// Ends the body and waits for the answer; the sequence number the server wrote.
    pub(crate) async fn finish(mut self) -> Result<i64, PublishError> {
        self.body = None;
        self.answer().await.map(|w| w.unwrap_or(self.seq))
    }

    async fn answer(&mut self) -> Result<Option<i64>, PublishError> {
        let Some(handle) = self.answer.take() else {
            return Err(PublishError::Transport("no answer".into()));
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, handle).await {
            Ok(Ok(Ok((WriteAnswer::Written(seq), _)))) => Ok(seq),
            Ok(Ok(Ok((WriteAnswer::Gone, _)))) => Err(PublishError::End(ChannelEnd::Gone)),
            Ok(Ok(Ok((WriteAnswer::Closed, _)))) => Err(PublishError::End(ChannelEnd::Closed)),
            Ok(Ok(Ok((WriteAnswer::Failed(status), detail)))) => Err(PublishError::Status(status, detail)),
            Ok(Ok(Err(e))) => Err(PublishError::Transport(e)),
            Ok(Err(e)) => Err(PublishError::Transport(format!("the POST task ended: {e}"))),
            Err(_) => Err(PublishError::Transport(format!("no answer within {ANSWER_TIMEOUT:?}"))),
        }
    }
}

impl Drop for Post {
    fn drop(&mut self) {
        // A POST given up (the stream moved on): its connection is closed, not finished.
        if let Some(h) = self.answer.take() {
            h.abort();
        }
    }
}
