//! The one mapping from every failure to an HTTP status and a stable error code.
//!
//! Body shape: `{"error":{"code":"kebab-case","message":"...", ...},"detail":{"msg":"..."}}`
//! plus, on failed jobs, the list of attempts. `detail.msg` repeats the message in the shape
//! of the AI runner's `HTTPError`, which the `livepeer-ai` SDK parses on 400, 401 and 500; it is
//! on every error body (not only the AI-runner paths) because one shape is simpler for clients
//! and an extra field harms no JSON reader.
//! Statuses follow the design: 400 bad input, 401 token, 404 unknown, 409 duplicate,
//! 413 too large, 502 upstream failed, 503 nothing routable or overloaded, 504 retry timeout.

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use byoc_actors::protocol::header::HeaderError;
use byoc_actors::route::{AttemptReport, RouteError};
use byoc_actors::store::StoreError;
use byoc_actors::stream::StreamError;
use byoc_actors::supervisor::RegistryError;

/// The JSON shape of every error answer.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// The same message as the AI runner shapes errors (`{"detail":{"msg":...}}`).
    pub detail: RunnerErrorDetail,
}

/// The AI runner's error object (`HTTPError.detail` in its OpenAPI spec).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RunnerErrorDetail {
    /// Human-readable message (equal to `error.message`).
    pub msg: String,
}

/// The `error` object.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable kebab-case code (`unknown-capability`, `invalid-json`, ...).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The attempts of a failed job (orchestrator, url, result, status, detail, elapsed_ms).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<AttemptReport>,
    /// Seconds until a retry may succeed (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// For a registry write that failed (`registry-unavailable`): `not-applied` (certainly
    /// not applied: retry when the registry is back) or `unknown` (sent and unanswered: it may
    /// still commit; read the registry back before retrying).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub outcome: Option<&'static str>,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable kebab-case code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Seconds for `Retry-After`, when known.
    pub retry_after: Option<u64>,
    /// Attempts made, for failed jobs.
    pub attempts: Vec<AttemptReport>,
    /// Whether a failed registry write may still commit.
    pub outcome: Option<&'static str>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, attempts: Vec::new(), outcome: None }
    }

    /// 503 `overloaded`: the gateway's in-flight job limit is reached; retry in a second.
    pub fn shed(limit: usize) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("the gateway is at its limit of {limit} jobs in flight (limits.max_inflight_jobs); retry shortly"),
        );
        e.retry_after = Some(1);
        e
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 413.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the request body is over the {limit}-byte limit"),
        )
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid 'Authorization: Bearer <token>' header is required",
        )
    }

    /// 404 for an unknown route.
    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", format!("no route for {method} {path}"))
    }

    /// 405.
    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", format!("only {allowed} is allowed here"))
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                attempts: self.attempts.clone(),
                retry_after_seconds: self.retry_after,
                outcome: self.outcome,
            },
            detail: RunnerErrorDetail { msg: self.message.clone() },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        if let Some(s) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        resp.json(self.body())
    }
}

impl From<HeaderError> for ApiError {
    fn from(e: HeaderError) -> Self {
        let code = match &e {
            HeaderError::Missing => "missing-livepeer-header",
            HeaderError::Malformed(_) => "invalid-livepeer-header",
            HeaderError::MissingTimeout => "missing-timeout",
            HeaderError::TimeoutTooLong(_) => "timeout-too-long",
            HeaderError::MissingCapability => "missing-capability",
            HeaderError::InvalidCapability(_) => "invalid-capability",
            HeaderError::InvalidJob(_) => "invalid-job",
        };
        Self::bad_request(code, e.to_string())
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        let status = match &e {
            RouteError::UnknownCapability(_) => StatusCode::NOT_FOUND,
            RouteError::NoneRoutable { .. }
            | RouteError::QueueFull { .. }
            | RouteError::QueueTimeout { .. }
            | RouteError::DiscoveryRateLimited { .. }
            | RouteError::CapabilityLimit(_)
            | RouteError::Overloaded(_)
            | RouteError::AnswerBudgetExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RouteError::AttemptsExhausted { .. } => StatusCode::BAD_GATEWAY,
            // go-livepeer relays the orchestrator's 400; here it comes only once no other
            // orchestrator could take the job, as JSON naming each answer.
            RouteError::OrchestratorRefused { .. } => StatusCode::BAD_REQUEST,
            RouteError::BudgetExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RouteError::RetryTimeout { .. } | RouteError::JobTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        };
        let mut err = Self::new(status, e.code(), e.to_string());
        err.attempts = e.attempts().to_vec();
        err.retry_after = e.retry_after_secs();
        err
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let (status, code) = match &e {
            RegistryError::InvalidUrl(_) => (StatusCode::BAD_REQUEST, "invalid-url"),
            RegistryError::InvalidCapability(..) => (StatusCode::BAD_REQUEST, "invalid-capability"),
            RegistryError::InvalidLabel(_) => (StatusCode::BAD_REQUEST, "invalid-label"),
            RegistryError::TooManyCapabilities(_) => (StatusCode::BAD_REQUEST, "too-many-capabilities"),
            RegistryError::Duplicate { .. } => (StatusCode::CONFLICT, "duplicate-orchestrator"),
            RegistryError::NotFound(_) => (StatusCode::NOT_FOUND, "orchestrator-not-found"),
            RegistryError::PairNotFound(..) => (StatusCode::NOT_FOUND, "pair-not-found"),
            RegistryError::CapabilityNotFound(_) | RegistryError::NoRuntimePolicy(_) => {
                (StatusCode::NOT_FOUND, "capability-not-found")
            }
            RegistryError::InvalidPolicy(..) => (StatusCode::BAD_REQUEST, "invalid-policy"),
            RegistryError::CapabilityDeclared { .. } => (StatusCode::CONFLICT, "capability-declared"),
            RegistryError::Store(StoreError::Corrupt { .. }) => (StatusCode::INTERNAL_SERVER_ERROR, "store-corrupt"),
            RegistryError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"),
            RegistryError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "actor-unavailable"),
            RegistryError::RegistryUnavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "registry-unavailable"),
        };
        let mut err = Self::new(status, code, e.to_string());
        if let RegistryError::RegistryUnavailable { outcome, .. } = &e {
            err.outcome = Some(outcome.as_str());
            err.retry_after = Some(1);
        }
        err
    }
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        let status = match &e {
            StreamError::Start(route) => return Self::from(route.clone()).with_message(e.to_string()),
            StreamError::InvalidBody(_)
            | StreamError::InvalidParams(_)
            | StreamError::InvalidStreamId(_)
            | StreamError::Unsupported(_)
            | StreamError::InvalidOutput(_)
            | StreamError::CapabilityMismatch { .. } => StatusCode::BAD_REQUEST,
            StreamError::Duplicate(_) | StreamError::Ended { .. } => StatusCode::CONFLICT,
            StreamError::NotFound(_) | StreamError::NoMedia(_) => StatusCode::NOT_FOUND,
            StreamError::SegmentTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            StreamError::StartTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            StreamError::Upstream(_) => StatusCode::BAD_GATEWAY,
            // go-livepeer: 503 `Stream data not available`.
            StreamError::NoData | StreamError::Limit(_) | StreamError::ShuttingDown | StreamError::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let mut err = Self::new(status, e.code(), e.to_string());
        err.attempts = e.attempts().to_vec();
        if matches!(e, StreamError::Limit(_) | StreamError::Unavailable) {
            err.retry_after = Some(1);
        }
        err
    }
}

impl ApiError {
    fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self
    }
}

/// Maps an actix mailbox failure on an admin path.
pub fn mailbox(actor: &'static str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "actor-unavailable", format!("the {actor} did not answer in time"))
}
