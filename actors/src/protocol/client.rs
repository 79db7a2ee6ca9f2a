//! The gateway's HTTP side of the protocol: building the shared `awc` client, probing
//! `/process/token`, and forwarding a job to an orchestrator.
//!
//! Orchestrators serve HTTPS with self-signed certificates, so certificate verification is
//! off unless the operator asks for it, exactly as go-livepeer's gateway does
//! (`InsecureSkipVerify`). Plain `http://` orchestrators work too.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use awc::error::{PayloadError, SendRequestError};
use awc::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, VIA};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;

mod answer;
mod event_stream;

use event_stream::Chunks;
pub use event_stream::{EventStream, StreamBroken};

use super::body::JobBody;
use super::names;
use super::signer::Signer;
use super::token::{eth_address_header, JobToken};
use crate::capability::Capability;
use crate::memory::ByteBudget;

/// How the upstream client is built. One client is built per thread that calls
/// orchestrators (an `awc::Client` is `!Send`), all from the same settings.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Verify orchestrator TLS certificates. Off by default: orchestrators self-sign.
    pub tls_verify: bool,
    /// Bound on TCP connect plus TLS handshake (go-livepeer uses 2 s).
    pub connect_timeout: Duration,
    /// Simultaneous upstream connections per client (awc's default of 100 is too low for a
    /// gateway).
    pub max_connections: usize,
    /// Largest response body accepted from an orchestrator.
    pub max_response_bytes: usize,
    /// The bytes of answers held at once, over every job (`limits.answer_budget_bytes`).
    pub answers: Arc<ByteBudget>,
}

/// Default of `limits.answer_budget_bytes`.
pub const DEFAULT_ANSWER_BUDGET: usize = 256 << 20;

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            tls_verify: false,
            connect_timeout: Duration::from_secs(2),
            max_connections: 4096,
            max_response_bytes: 64 * 1024 * 1024,
            answers: ByteBudget::new(DEFAULT_ANSWER_BUDGET, crate::metrics::ANSWER_BYTES),
        }
    }
}

/// The client could not be built (TLS library setup).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for the upstream client: {0}")]
pub struct ClientBuildError(#[from] openssl::error::ErrorStack);

/// Builds an upstream client: no redirects (a job must not wander), no default headers,
/// keep-alive pooling, TLS per `settings`.
pub fn build_client(settings: &ClientSettings) -> Result<awc::Client, ClientBuildError> {
    let connector = awc::Connector::new()
        .openssl(shared_tls(settings.tls_verify)?)
        .timeout(settings.connect_timeout)
        .handshake_timeout(settings.connect_timeout)
        .limit(settings.max_connections)
        .conn_keep_alive(Duration::from_secs(60));
    Ok(awc::Client::builder().connector(connector).disable_redirects().disable_timeout().no_default_headers().finish())
}

/// Sets up the TLS context `settings` ask for, so a failure shows at start rather than in a
/// worker. Cheaper than building a client: awc's client and connector constructors each
/// build, then discard, a default TLS context that parses the system CA bundle.
pub fn check_tls(settings: &ClientSettings) -> Result<(), ClientBuildError> {
    shared_tls(settings.tls_verify).map(drop)
}

/// The process's TLS context for one verification mode, built on first use. OpenSSL parses
/// the whole system CA bundle into every context it builds (about 1.2 MB resident each), and
/// the gateway builds a client per thread that calls orchestrators; a context is reference
/// counted, so every client shares one.
fn shared_tls(verify: bool) -> Result<SslConnector, ClientBuildError> {
    static CONTEXTS: [OnceLock<SslConnector>; 2] = [OnceLock::new(), OnceLock::new()];
    let cell = &CONTEXTS[usize::from(verify)];
    if let Some(tls) = cell.get() {
        return Ok(tls.clone());
    }
    let built = build_tls(verify)?;
    Ok(cell.get_or_init(|| built).clone())
}

fn build_tls(verify: bool) -> Result<SslConnector, ClientBuildError> {
    let mut tls = SslConnector::builder(SslMethod::tls())?;
    if !verify {
        tls.set_verify(SslVerifyMode::NONE);
        // The builder has loaded the system CA bundle; without verification nothing reads it,
        // so an empty store frees it (about 1.2 MB).
        tls.set_cert_store(X509StoreBuilder::new()?.build());
    }
    // HTTP/1.1 only: ALPN h2 towards self-signed orchestrators gains nothing for
    // request/response jobs and costs a code path.
    tls.set_alpn_protos(b"\x08http/1.1")?;
    Ok(tls.build())
}

/// A failure to get an answer from an orchestrator. The classes matter: the dispatcher
/// treats all of them as retryable, the pair's health model weighs them differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// TCP connect or TLS handshake failed (refused, reset, unreachable).
    #[error("connect failed: {0}")]
    Connect(String),
    /// No complete answer within the deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke or the answer was not HTTP.
    #[error("transport error: {0}")]
    Transport(String),
    /// The answer's body was over the configured limit.
    #[error("response body over the {0}-byte limit")]
    ResponseTooLarge(usize),
    /// The target URL could not be used.
    #[error("invalid upstream URL: {0}")]
    InvalidUrl(String),
    /// The gateway had no room in its answer budget for the answer within the attempt's time
    /// (the gateway's limit, not the orchestrator's fault).
    #[error("no room in the gateway's answer budget ({0} bytes, limits.answer_budget_bytes) for the answer in time")]
    AnswerBudget(usize),
}

impl UpstreamError {
    /// Whether the request may have reached the orchestrator before the failure: a broken
    /// connection or answer, not a connection that never opened (refused, unreachable, TLS) or
    /// a time-out.
    pub(crate) fn after_sending(&self) -> bool {
        matches!(self, UpstreamError::Transport(_))
    }

    /// Short stable name of the class (for metrics labels and the admin view).
    pub(crate) fn class(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Transport(_) => "transport",
            UpstreamError::ResponseTooLarge(_) => "too-large",
            UpstreamError::InvalidUrl(_) => "invalid-url",
            UpstreamError::AnswerBudget(_) => "answer-budget",
        }
    }
}

pub(crate) fn map_send_error(e: SendRequestError, timeout: Duration) -> UpstreamError {
    match e {
        // awc reports a connection the server dropped mid-exchange as its connector being
        // "disconnected": the request went out, so it is a broken exchange, not a failed connect.
        SendRequestError::Connect(awc::error::ConnectError::Disconnected) => {
            UpstreamError::Transport("the connection was dropped during the exchange".into())
        }
        SendRequestError::Connect(c) => UpstreamError::Connect(c.to_string()),
        SendRequestError::Timeout => UpstreamError::Timeout(timeout),
        SendRequestError::Url(u) => UpstreamError::InvalidUrl(u.to_string()),
        other => UpstreamError::Transport(other.to_string()),
    }
}

pub(crate) fn map_payload_error(e: PayloadError, limit: usize) -> UpstreamError {
    match e {
        PayloadError::Overflow => UpstreamError::ResponseTooLarge(limit),
        other => UpstreamError::Transport(other.to_string()),
    }
}

/// Why a token probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// The orchestrator could not be reached or did not answer in time.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// It answered with a non-200 status (body excerpt attached).
    #[error("token probe answered {0}: {1}")]
    Status(u16, String),
    /// It answered 200 with a body that is not a token.
    #[error("token body is not valid JSON: {0}")]
    Body(String),
}

const TOKEN_BODY_LIMIT: usize = 256 * 1024;

/// Probes `GET {orch_url}/process/token` for `capability`, bounded by `timeout` overall.
pub(crate) async fn fetch_token(
    client: &awc::Client,
    orch_url: &str,
    capability: &Capability,
    signer: &dyn Signer,
    timeout: Duration,
) -> Result<JobToken, TokenError> {
    let url = format!("{orch_url}/process/token");
    let fut = async {
        let mut resp = client
            .get(&url)
            .insert_header((names::LIVEPEER_ETH_ADDRESS, eth_address_header(signer)))
            .insert_header((names::LIVEPEER_CAPABILITY, capability.as_str()))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| map_send_error(e, timeout))?;
        let status = resp.status().as_u16();
        let body = resp.body().limit(TOKEN_BODY_LIMIT).await.map_err(|e| map_payload_error(e, TOKEN_BODY_LIMIT))?;
        if status != 200 {
            return Err(TokenError::Status(status, excerpt(&body)));
        }
        serde_json::from_slice::<JobToken>(&body).map_err(|e| TokenError::Body(e.to_string()))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout(timeout).into()),
    }
}

/// What an orchestrator answered to a job.
#[derive(Debug)]
pub(crate) struct UpstreamReply {
    /// HTTP status.
    pub(crate) status: u16,
    /// `Content-Type`, if any.
    pub(crate) content_type: Option<String>,
    /// `Livepeer-Balance` (or, on a stream, `Livepeer-Payment-Balance`), if any.
    pub(crate) balance: Option<String>,
    /// `X-Metadata`, if any.
    pub(crate) metadata: Option<String>,
    /// The whole body, holding its bytes of the answer budget; empty when the answer is a
    /// stream.
    pub(crate) body: JobBody,
    /// A `text/event-stream` answer, relayed as it arrives instead of buffered.
    pub(crate) stream: Option<EventStream>,
}

/// Whether a `Content-Type` is Server-Sent Events (go-livepeer checks "contains").
pub(crate) fn is_event_stream(content_type: Option<&str>) -> bool {
    // Checked on every answer: compare in place rather than lower-case a copy.
    const SSE: &[u8] = b"text/event-stream";
    content_type.is_some_and(|ct| ct.as_bytes().windows(SSE.len()).any(|w| w.eq_ignore_ascii_case(SSE)))
}

/// A job ready to send to one orchestrator.
#[derive(Debug, Clone)]
pub(crate) struct Forward<'a> {
    /// Full target URL: the token's `service_addr` plus the client's path. Owned, so the
    /// client parses it in place rather than copying it.
    pub(crate) url: String,
    /// The `Livepeer` header value (already signed for this attempt).
    pub(crate) job_header: &'a str,
    /// The client's `Content-Type`, forwarded unchanged.
    pub(crate) content_type: Option<&'a str>,
    /// The request id, sent upstream as `X-Request-Id`.
    pub(crate) request_id: &'a str,
    /// The `Via` header: the gateway's loop marker after what the job arrived with
    /// ([`super::via::LoopMarker`]).
    pub(crate) via: &'a HeaderValue,
    /// Deadline for the whole exchange, body included.
    pub(crate) timeout: Duration,
    /// Largest body accepted back.
    pub(crate) max_response_bytes: usize,
    /// The budget the answer's bytes are taken from.
    pub(crate) answers: &'a Arc<ByteBudget>,
    /// Bound on an event stream once it has started (the job's own timeout).
    pub(crate) stream_timeout: Duration,
    /// The `Livepeer-Payment` value, when the job is paid.
    pub(crate) payment: Option<&'a str>,
}

/// POSTs a job and reads the whole answer, bounded by `fwd.timeout`; a 2xx `text/event-stream`
/// answer is returned once its headers arrive, its body left to stream (bounded by
/// `fwd.stream_timeout`).
pub(crate) async fn forward_job(
    client: &awc::Client,
    fwd: Forward<'_>,
    body: &JobBody,
) -> Result<UpstreamReply, UpstreamError> {
    // Set while the answer waits for room in the budget: a time-out then is the gateway's.
    let waiting = std::cell::Cell::new(false);
    let (answers, max) = (fwd.answers, fwd.max_response_bytes);
    let fut = async {
        // Pre-parsed header names (parsing a `&str` name costs more than the rest of the
        // header), and no awc timeout: the `tokio::time::timeout` below bounds the whole
        // exchange, body included, and one timer per call is enough.
        let mut req = client
            .post(fwd.url)
            .insert_header((names::LIVEPEER, fwd.job_header))
            .insert_header((names::X_REQUEST_ID, fwd.request_id))
            .insert_header((VIA, fwd.via.clone()));
        if let Some(ct) = fwd.content_type {
            req = req.insert_header((CONTENT_TYPE, ct));
        }
        if let Some(p) = fwd.payment {
            req = req.insert_header((names::LIVEPEER_PAYMENT, p));
        }
        let mut resp = req.send_body(body.stream()).await.map_err(|e| map_send_error(e, fwd.timeout))?;
        let header = |name: &HeaderName| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let status = resp.status().as_u16();
        let content_type = header(&CONTENT_TYPE);
        // On a stream the orchestrator names the balance header differently (go-livepeer's
        // gateway reads the wrong one and relays it empty); take either.
        let balance = header(&names::LIVEPEER_BALANCE).or_else(|| header(&names::LIVEPEER_PAYMENT_BALANCE));
        let metadata = header(&names::X_METADATA);
        if (200..300).contains(&status) && is_event_stream(content_type.as_deref()) {
            let chunks: Chunks = Box::pin(resp);
            let stream = Some(EventStream::new(chunks, fwd.stream_timeout));
            let body = JobBody::default();
            return Ok(UpstreamReply { status, content_type, balance, metadata, body, stream });
        }
        if !(200..600).contains(&status) {
            // No job ends with this status (`Outcome::BadStatus`): its body is not read (after a
            // `101` it is whatever the orchestrator sends until it hangs up), and dropping the
            // unread answer closes the connection rather than pooling it.
            let body = JobBody::default();
            return Ok(UpstreamReply { status, content_type, balance, metadata, body, stream: None });
        }
        let declared = header(&CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
        let body = answer::read(&mut resp, declared, answers, max, &waiting).await?;
        Ok(UpstreamReply { status, content_type, balance, metadata, body, stream: None })
    };
    match tokio::time::timeout(fwd.timeout, fut).await {
        Ok(r) => r,
        Err(_) if waiting.get() => Err(UpstreamError::AnswerBudget(answers.limit())),
        Err(_) => Err(UpstreamError::Timeout(fwd.timeout)),
    }
}

/// First 200 characters of a body, lossily decoded, for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::is_event_stream;

    #[test]
    fn event_stream_content_types() {
        assert!(is_event_stream(Some("text/event-stream")));
        assert!(is_event_stream(Some("Text/Event-Stream; charset=utf-8")));
        assert!(!is_event_stream(Some("application/json")));
        assert!(!is_event_stream(Some("text/event")));
        assert!(!is_event_stream(None));
    }
}
