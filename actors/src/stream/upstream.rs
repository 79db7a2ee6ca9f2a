//! The calls a gateway makes to an orchestrator about a stream (all `POST` with a signed
//! `Livepeer` job header): `/ai/stream/start`, `/update`, `/stop`, `/payment`.

use std::time::Duration;

use awc::http::header::{HeaderMap, CONTENT_TYPE};
use bytes::Bytes;

use crate::protocol::client::{map_send_error, UpstreamError};
use crate::protocol::header::JobRequest;
use crate::protocol::names;
use crate::protocol::signer::Signer;

/// Largest answer body read from these calls.
const ANSWER_LIMIT: usize = 1 << 20;

/// The paths, as go-livepeer's orchestrator serves them.
pub(crate) const START: &str = "/ai/stream/start";
pub(crate) const UPDATE: &str = "/ai/stream/update";
pub(crate) const STOP: &str = "/ai/stream/stop";
pub(crate) const PAYMENT: &str = "/ai/stream/payment";

/// One call.
pub(crate) struct Call<'a> {
    /// The orchestrator's `service_addr`.
    pub(crate) service_addr: &'a str,
    /// One of the paths above.
    pub(crate) path: &'static str,
    /// The `Livepeer` header value.
    pub(crate) header: &'a str,
    /// The body.
    pub(crate) body: Bytes,
    /// Its type.
    pub(crate) content_type: Option<&'a str>,
    /// A `Livepeer-Payment`, when one is due.
    pub(crate) payment: Option<&'a str>,
    /// Bound on the whole exchange.
    pub(crate) timeout: Duration,
}

/// What the orchestrator answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// Makes one call.
pub(crate) async fn post(client: &awc::Client, call: Call<'_>) -> Result<Answer, UpstreamError> {
    let url = format!("{}{}", call.service_addr.trim_end_matches('/'), call.path);
    let timeout = call.timeout;
    let fut = async {
        let mut req = client.post(url).insert_header((names::LIVEPEER, call.header));
        if let Some(ct) = call.content_type {
            req = req.insert_header((CONTENT_TYPE, ct));
        }
        if let Some(p) = call.payment {
            req = req.insert_header((names::LIVEPEER_PAYMENT, p));
        }
        let mut resp = req.send_body(call.body).await.map_err(|e| map_send_error(e, timeout))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.body().limit(ANSWER_LIMIT).await.map_err(|e| UpstreamError::Transport(e.to_string()))?;
        Ok(Answer { status, headers, body })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}

/// The signed job header of a call about stream `id` that is not the start (go-livepeer's stop
/// and payment jobs: `request {"stream_id"}`, `parameters "{}"`).
pub(crate) fn stream_header(signer: &dyn Signer, id: &str, capability: &str, timeout_seconds: u64) -> String {
    let request = super::request::stream_request(id);
    let parameters = "{}".to_string();
    let sig = signer.sign_job(&request, &parameters);
    JobRequest {
        id: id.to_string(),
        request,
        parameters,
        capability: capability.to_string(),
        capability_url: String::new(),
        sender: signer.address().to_string(),
        sig,
        timeout_seconds,
    }
    .encode()
}
