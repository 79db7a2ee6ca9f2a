//! Serving a [`Channel`] over HTTP as go-livepeer's trickle server does (`trickle_server.go`),
//! framework-neutral: each function returns the status, headers and body to send, so the gateway's
//! stream endpoints and the simulator's orchestrator side answer alike from one implementation.

use std::convert::Infallible;
use std::sync::Arc;

use awc::http::header::{HeaderName, CONNECTION};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::window::{Channel, ReadStart, SegmentReader, WriteError};
use super::{CLOSED, LATEST, SEQ, STATUS_NONEXISTENT};

/// An answer to send.
pub struct Reply<B> {
    /// The status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(HeaderName, String)>,
    /// The body.
    pub body: B,
}

/// The body of a GET's answer.
pub enum GetBody {
    /// A short text.
    Text(&'static str),
    /// The segment, streamed as it is written.
    Segment(Segment),
}

/// A segment's bytes as a stream (the first chunk already read, so the headers could be sent).
pub struct Segment {
    first: Option<Bytes>,
    reader: SegmentReader,
}

impl Segment {
    /// The chunks, first to last, as they arrive.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + 'static {
        futures_util::stream::unfold(self, |mut s| async move {
            let chunk = match s.first.take() {
                Some(c) => Some(c),
                None => s.reader.next().await,
            };
            chunk.map(|c| (Ok(c), s))
        })
    }
}

/// `GET {channel}/{seq}`: the segment (headers once its first byte is there), 470 with the latest
/// number when it is not in the window, a closed answer once the channel is closed.
pub async fn get(channel: &Channel, seq: i64) -> Reply<GetBody> {
    match channel.read(seq) {
        ReadStart::Missing { seq, latest, closed } => {
            let mut headers = vec![(LATEST, latest.to_string()), (SEQ, seq.to_string())];
            if closed {
                headers.push((CLOSED, "terminated".into()));
                Reply { status: 200, headers, body: GetBody::Text("Entry not found") }
            } else {
                Reply { status: STATUS_NONEXISTENT, headers, body: GetBody::Text("Entry not found") }
            }
        }
        ReadStart::Segment { mut reader, latest } => {
            let seq = reader.seq();
            match reader.next().await {
                Some(first) => {
                    let mut headers = vec![(SEQ, seq.to_string())];
                    if seq != latest {
                        headers.push((LATEST, latest.to_string()));
                    }
                    Reply { status: 200, headers, body: GetBody::Segment(Segment { first: Some(first), reader }) }
                }
                None => {
                    // Ended empty (dropped, or the channel closed): say where the channel is.
                    let stats = channel.stats();
                    let mut headers = vec![(SEQ, seq.to_string()), (LATEST, stats.next.to_string())];
                    if stats.closed {
                        headers.push((CLOSED, "terminated".into()));
                    }
                    Reply { status: 200, headers, body: GetBody::Text("") }
                }
            }
        }
    }
}

/// `POST {channel}/{seq}`: writes the body as it arrives. `reset` is the publisher's
/// `Lp-Trickle-Reset` (segments before this one are closed).
pub async fn post<S, E>(channel: &Arc<Channel>, seq: i64, reset: bool, body: S) -> Reply<&'static str>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let Some(mut writer) = channel.write(seq) else {
        return Reply {
            status: 200,
            headers: vec![(SEQ, seq.to_string()), (CLOSED, "terminated".into()), (CONNECTION, "close".into())],
            body: "",
        };
    };
    if reset {
        channel.reset_before(writer.seq());
    }
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            // The publisher went away mid-segment: what arrived stays, the segment ends there.
            return Reply { status: 500, headers: vec![], body: "Server error" };
        };
        match writer.write(chunk) {
            Ok(()) => {}
            Err(WriteError::TooLarge(_)) => {
                return Reply { status: 413, headers: vec![(CONNECTION, "close".into())], body: "Segment too large" }
            }
            Err(WriteError::Closed) => break,
        }
    }
    let (seq, closed) = writer.finish();
    let mut headers = vec![(SEQ, seq.to_string())];
    if closed {
        headers.push((CLOSED, "terminated".into()));
    }
    Reply { status: 200, headers, body: "" }
}

/// `GET {channel}/next`: the next sequence number (header and body).
pub fn next(channel: &Channel) -> Reply<String> {
    let stats = channel.stats();
    let mut headers = vec![(LATEST, stats.next.to_string())];
    if stats.closed {
        headers.push((CLOSED, "terminated".into()));
    }
    Reply { status: 200, headers, body: stats.next.to_string() }
}

/// Parses a `{seq}` path segment (go-livepeer: an integer; `-1` is the next, `-2` the current).
pub fn parse_seq(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| *n >= -2)
}

/// The answer to a request for a channel that does not exist.
pub fn not_found() -> Reply<&'static str> {
    Reply { status: 404, headers: vec![(CONNECTION, "close".into())], body: "Stream not found" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::trickle::window::Limits;
    use crate::protocol::trickle::NEXT;

    fn chunks(parts: &[&'static str]) -> impl Stream<Item = Result<Bytes, Infallible>> {
        futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect::<Vec<_>>())
    }

    fn header(r: &[(HeaderName, String)], name: &HeaderName) -> Option<String> {
        r.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[actix_rt::test]
    async fn a_post_then_a_get_round_trips_with_go_livepeers_headers() {
        let ch = Channel::new(Limits::default());
        let w = post(&ch, NEXT, false, chunks(&["he", "llo"])).await;
        assert_eq!((w.status, header(&w.headers, &SEQ)), (200, Some("0".into())));
        let r = get(&ch, 0).await;
        assert_eq!(r.status, 200);
        assert_eq!(header(&r.headers, &SEQ).as_deref(), Some("0"));
        assert_eq!(header(&r.headers, &LATEST).as_deref(), Some("1"), "not the live segment: latest given");
        let GetBody::Segment(seg) = r.body else { panic!("a segment") };
        let got: Vec<Bytes> = seg.into_stream().map(|c| c.unwrap_or_default()).collect().await;
        assert_eq!(got.concat(), b"hello");
    }

    #[actix_rt::test]
    async fn missing_segments_answer_470_and_closed_channels_say_so() {
        let ch = Channel::new(Limits { window: 2, max_segment_bytes: 1 << 20 });
        for _ in 0..3 {
            post(&ch, NEXT, false, chunks(&["x"])).await;
        }
        let r = get(&ch, 0).await;
        assert_eq!((r.status, header(&r.headers, &LATEST)), (470, Some("3".into())));
        ch.close();
        let r = get(&ch, 7).await;
        assert_eq!((r.status, header(&r.headers, &CLOSED)), (200, Some("terminated".into())));
        let w = post(&ch, NEXT, false, chunks(&["y"])).await;
        assert_eq!(header(&w.headers, &CLOSED).as_deref(), Some("terminated"));
        assert_eq!(header(&next(&ch).headers, &CLOSED).as_deref(), Some("terminated"));
        assert_eq!(next(&ch).body, "3");
    }

    #[actix_rt::test]
    async fn oversized_segments_are_refused() {
        let ch = Channel::new(Limits { window: 5, max_segment_bytes: 3 });
        assert_eq!(post(&ch, NEXT, false, chunks(&["ab", "cd"])).await.status, 413);
        assert_eq!(parse_seq("-1"), Some(-1));
        assert_eq!(parse_seq("-3"), None);
        assert_eq!(parse_seq("x"), None);
    }
}
