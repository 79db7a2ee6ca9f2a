//! The HTTP of forwarding to a runner: which headers cross (end-to-end ones, both ways; never
//! hop-by-hop ones), sending a request, and the answer relayed as it arrives while it holds
//! what the call holds (its runner's slot, the session's activity).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use awc::error::PayloadError;
use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
use awc::http::Method;
use bytes::Bytes;
use futures_util::Stream;

use crate::protocol::client::{map_send_error, UpstreamError};

/// Headers that belong to one connection (RFC 9110 §7.6.1), plus those the client of the next
/// hop sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Whether `name` crosses a proxy.
pub(crate) fn end_to_end(name: &HeaderName) -> bool {
    !HOP_BY_HOP.contains(&name.as_str())
}

/// The end-to-end headers of `headers`.
pub fn end_to_end_headers(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers.iter().filter(|(n, _)| end_to_end(n)).map(|(n, v)| (n.clone(), v.clone())).collect()
}

/// Headers the gateway adds to a request for a runner (the payer's, a payment's).
pub type ExtraHeaders = Vec<(&'static str, String)>;

/// A request for a runner, as the client sent it (the body held whole, to replay on failover).
#[derive(Debug, Clone)]
pub struct Forward {
    /// The client's method.
    pub method: Method,
    /// The path after the app (`""` or starting with `/`).
    pub tail: String,
    /// The raw query string (without `?`), possibly empty.
    pub query: String,
    /// End-to-end headers of the client's request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Bytes,
}

impl Forward {
    /// The URL of this request at `base` (a runner's or a session's app URL).
    pub(crate) fn url(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        match self.query.is_empty() {
            true => format!("{base}{}", self.tail),
            false => format!("{base}{}?{}", self.tail, self.query),
        }
    }

    /// The awc request to `url`, headers included.
    pub(crate) fn request(&self, client: &awc::Client, url: &str, timeout: Duration) -> awc::ClientRequest {
        let mut req = client.request(self.method.clone(), url).timeout(timeout);
        for (n, v) in &self.headers {
            req = req.append_header((n.clone(), v.clone()));
        }
        req
    }

    /// Sends this request to `url` with the `extra` headers (payment); the answer's head, its
    /// body still to read.
    pub(crate) async fn send(
        &self,
        client: &awc::Client,
        url: &str,
        timeout: Duration,
        extra: &ExtraHeaders,
    ) -> Result<awc::ClientResponse, UpstreamError> {
        let mut req = self.request(client, url, timeout);
        for (n, v) in extra {
            req = req.insert_header((*n, v.as_str()));
        }
        req.send_body(self.body.clone()).await.map_err(|e| map_send_error(e, timeout))
    }
}

/// A streamed answer body.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;

/// A runner's answer relayed to the client.
pub struct Relay {
    /// The runner's status.
    pub status: u16,
    /// Its end-to-end headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Its body, relayed as it arrives.
    pub body: BodyStream,
    /// The runner that answered (`orchestrator:route`).
    pub runner: String,
    /// Runners tried, the answering one included.
    pub attempts: usize,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("status", &self.status).field("runner", &self.runner).finish()
    }
}

/// A body stream that holds `H` (a slot, a session's activity) until it ends or is dropped
/// (the client hung up).
pub(crate) struct Holding<S, H> {
    pub(crate) inner: S,
    pub(crate) held: Option<H>,
}

impl<S: Stream + Unpin, H: Unpin> Stream for Holding<S, H> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = next {
            self.held = None;
        }
        next
    }
}

/// The answer `resp` relayed, holding `held` while its body streams.
pub(crate) fn relay<H: Unpin + 'static>(resp: awc::ClientResponse, held: H, runner: String, attempts: usize) -> Relay {
    let status = resp.status().as_u16();
    let headers = end_to_end_headers(resp.headers());
    let body: BodyStream = Box::pin(Holding { inner: resp, held: Some(held) });
    Relay { status, headers, body, runner, attempts }
}

/// A relay of bytes already read (an error answer read to classify it).
pub(crate) fn relay_bytes(
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    bytes: Bytes,
    runner: String,
    attempts: usize,
) -> Relay {
    let body: BodyStream = Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
    Relay { status, headers, body, runner, attempts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_never_cross_and_urls_keep_the_query() {
        let mut h = HeaderMap::new();
        h.insert(HeaderName::from_static("connection"), HeaderValue::from_static("close"));
        h.insert(HeaderName::from_static("host"), HeaderValue::from_static("gw"));
        h.insert(HeaderName::from_static("x-app"), HeaderValue::from_static("1"));
        let kept = end_to_end_headers(&h);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, "x-app");
        let f = Forward {
            method: Method::GET,
            tail: "/sse".into(),
            query: "n=2".into(),
            headers: kept,
            body: Bytes::new(),
        };
        assert_eq!(f.url("http://o/apps/r/app/"), "http://o/apps/r/app/sse?n=2");
        let f = Forward { tail: String::new(), query: String::new(), ..f };
        assert_eq!(f.url("http://o/apps/r/app"), "http://o/apps/r/app");
    }
}
