//! Fetching a discovery document: an orchestrator's `GET /discovery`, or a remote signer's
//! `GET /discover-orchestrators`, bounded in time (2 s) and size (1 MiB) as go-livepeer's
//! signer bounds it, with extra headers for a signer that wants them.

use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue};

use super::record::{self, Document, DocumentError};
use crate::protocol::client::{excerpt, map_payload_error, map_send_error, UpstreamError};

/// Why a fetch gave no document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    /// Nothing answered (connect refused, time-out) or the answer broke.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The orchestrator has no Live Runner (`404 live runners are not supported`, or no such
    /// route at all).
    #[error("{0}")]
    Unsupported(String),
    /// Another status than 200.
    #[error("discovery answered {0}: {1}")]
    Status(u16, String),
    /// A 200 that is not a discovery document.
    #[error(transparent)]
    Document(#[from] DocumentError),
}

impl FetchError {
    /// Whether nothing could be reached (its runners are then out at once: a request there
    /// would fail the same way).
    pub(crate) fn unreachable(&self) -> bool {
        matches!(self, FetchError::Upstream(UpstreamError::Connect(_) | UpstreamError::Timeout(_)))
    }

    /// Whether the connection was refused.
    pub(crate) fn connect(&self) -> bool {
        matches!(self, FetchError::Upstream(UpstreamError::Connect(_)))
    }

    /// Short stable name (metric label).
    pub(crate) fn class(&self) -> &'static str {
        match self {
            FetchError::Upstream(u) => u.class(),
            FetchError::Unsupported(_) => "unsupported",
            FetchError::Status(..) => "status",
            FetchError::Document(_) => "bad-document",
        }
    }
}

/// GETs `url` and parses what it answers as a discovery document from `origin`.
pub(crate) async fn fetch(
    client: &awc::Client,
    url: &str,
    origin: &str,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
    limit: usize,
) -> Result<Document, FetchError> {
    let fut = async {
        let mut req = client.get(url).insert_header(("Accept", "application/json"));
        for (name, value) in headers {
            req = req.insert_header((name.clone(), value.clone()));
        }
        let mut resp = req.send().await.map_err(|e| map_send_error(e, timeout))?;
        let status = resp.status().as_u16();
        let body = resp.body().limit(limit).await.map_err(|e| map_payload_error(e, limit))?;
        match status {
            200 => Ok(record::parse(&body, origin)?),
            404 => Err(FetchError::Unsupported(format!("no Live Runner here (404 {})", excerpt(&body)))),
            s => Err(FetchError::Status(s, excerpt(&body))),
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout(timeout).into()),
    }
}
