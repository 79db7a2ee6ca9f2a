//! Trickle, go-livepeer's segmented publish-subscribe protocol over plain HTTP
//! (`trickle/README.md`, `trickle_publisher.go`, `trickle_subscriber.go`, `trickle_server.go`):
//! a channel is a URL, a segment is `POST {channel}/{seq}` (a streamed body) and
//! `GET {channel}/{seq}` (streamed back as it arrives), `DELETE {channel}` closes it.
//!
//! - this file: the protocol's pure rules, how an answer is read (`Lp-Trickle-Seq`,
//!   `Lp-Trickle-Latest`, `Lp-Trickle-Closed`; 404 gone, 470 skip to the latest);
//! - [`cursor`]: where a subscriber reads next and when it gives up (pure);
//! - [`window`]: a channel as a server holds it, the last few segments (the gateway's own
//!   stream endpoints and the simulator's orchestrator side both serve from it);
//! - [`publisher`] and [`subscriber`]: the HTTP clients, with go-livepeer's preconnect of the
//!   next segment.

pub mod cursor;
pub(crate) mod publisher;
pub mod serve;
pub(crate) mod subscriber;
pub mod window;

use awc::http::header::{HeaderMap, HeaderName};

/// The sequence number of the segment an answer carries (or was written as).
pub const SEQ: HeaderName = HeaderName::from_static("lp-trickle-seq");
/// The channel's next sequence number (on 470, on `/next`, on a segment that is not the live one).
pub const LATEST: HeaderName = HeaderName::from_static("lp-trickle-latest");
/// Present when the channel is closed (end of stream).
pub const CLOSED: HeaderName = HeaderName::from_static("lp-trickle-closed");
/// Sent by a publisher that restarted: the server closes the segments before this one.
pub const RESET: HeaderName = HeaderName::from_static("lp-trickle-reset");
/// go-livepeer's status for "the channel exists but this segment does not".
pub const STATUS_NONEXISTENT: u16 = 470;
/// The sequence number that asks for the next segment to be written (the live edge).
pub const NEXT: i64 = -1;
/// The sequence number that asks for the segment being written now.
pub const CURRENT: i64 = -2;

/// How a subscriber's `GET {channel}/{seq}` was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAnswer {
    /// A segment follows in the body; its sequence number when the header carried one.
    Segment(Option<i64>),
    /// 404: the channel does not exist (the stream is gone).
    Gone,
    /// 470: the channel exists, the segment does not; read from `latest` instead.
    Skip(i64),
    /// `Lp-Trickle-Closed`: the channel ended.
    Closed,
    /// Any other status.
    Failed(u16),
}

impl ReadAnswer {
    /// Reads an answer as go-livepeer's subscriber does: end of stream first (a closed channel
    /// answers 200 with the header), then 404, 470 (skipping to `Lp-Trickle-Latest`, or to the
    /// live edge without one), a segment on 200.
    pub fn classify(status: u16, headers: &HeaderMap) -> Self {
        if headers.contains_key(CLOSED) {
            return ReadAnswer::Closed;
        }
        match status {
            404 => ReadAnswer::Gone,
            STATUS_NONEXISTENT => ReadAnswer::Skip(header_i64(headers, &LATEST).unwrap_or(NEXT)),
            200 => ReadAnswer::Segment(header_i64(headers, &SEQ)),
            other => ReadAnswer::Failed(other),
        }
    }
}

/// How a publisher's `POST {channel}/{seq}` was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAnswer {
    /// Written (200), as the sequence number the server reports.
    Written(Option<i64>),
    /// `Lp-Trickle-Closed`: the channel ended.
    Closed,
    /// 404: the channel does not exist.
    Gone,
    /// Any other status.
    Failed(u16),
}

impl WriteAnswer {
    /// Reads an answer as go-livepeer's publisher does: end of stream first, then 404, then
    /// any other status of 400 or more as a failure. An informational answer (go-livepeer's
    /// server sends `100 Continue` as a keep-alive while it waits for a preconnected segment's
    /// first byte) came after the whole body was sent: written.
    pub fn classify(status: u16, headers: &HeaderMap) -> Self {
        if headers.contains_key(CLOSED) {
            return WriteAnswer::Closed;
        }
        match status {
            404 => WriteAnswer::Gone,
            100..=399 => WriteAnswer::Written(header_i64(headers, &SEQ)),
            other => WriteAnswer::Failed(other),
        }
    }
}

/// An integer header, if present and well formed.
pub fn header_i64(headers: &HeaderMap, name: &HeaderName) -> Option<i64> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

/// Why a trickle channel stopped being usable for a stream; each is a reason to move the stream
/// to another orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelEnd {
    /// The channel answered 404.
    #[error("the channel is gone (404)")]
    Gone,
    /// The channel was closed (`Lp-Trickle-Closed`).
    #[error("the channel was closed")]
    Closed,
    /// Reads or writes kept failing past the retry bound.
    #[error("{0}")]
    Failing(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::http::header::HeaderValue;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert((*k).clone(), HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn reads_are_classified_as_go_livepeers_subscriber_does() {
        assert_eq!(ReadAnswer::classify(200, &headers(&[(&SEQ, "7")])), ReadAnswer::Segment(Some(7)));
        assert_eq!(ReadAnswer::classify(200, &headers(&[])), ReadAnswer::Segment(None));
        assert_eq!(ReadAnswer::classify(404, &headers(&[])), ReadAnswer::Gone);
        assert_eq!(ReadAnswer::classify(470, &headers(&[(&LATEST, "12"), (&SEQ, "3")])), ReadAnswer::Skip(12));
        assert_eq!(ReadAnswer::classify(470, &headers(&[])), ReadAnswer::Skip(NEXT), "no latest: the live edge");
        // A closed channel answers 200 "Entry not found" with the header (the 3.6a correction).
        assert_eq!(ReadAnswer::classify(200, &headers(&[(&CLOSED, "terminated"), (&SEQ, "4")])), ReadAnswer::Closed);
        assert_eq!(ReadAnswer::classify(500, &headers(&[])), ReadAnswer::Failed(500));
        assert_eq!(ReadAnswer::classify(200, &headers(&[(&SEQ, "x")])), ReadAnswer::Segment(None));
    }

    #[test]
    fn writes_are_classified_as_go_livepeers_publisher_does() {
        assert_eq!(WriteAnswer::classify(200, &headers(&[(&SEQ, "0")])), WriteAnswer::Written(Some(0)));
        assert_eq!(WriteAnswer::classify(200, &headers(&[(&CLOSED, "terminated")])), WriteAnswer::Closed);
        assert_eq!(WriteAnswer::classify(404, &headers(&[])), WriteAnswer::Gone);
        assert_eq!(WriteAnswer::classify(500, &headers(&[])), WriteAnswer::Failed(500));
        assert_eq!(WriteAnswer::classify(100, &headers(&[])), WriteAnswer::Written(None));
    }
}
