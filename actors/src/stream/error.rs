//! Why a stream request got no stream: one enum, each variant one stable code; the HTTP layer
//! maps each to one status (`src/http/error.rs`).

use crate::route::RouteError;

/// Why a stream request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// The `StartRequest` body is not the JSON go-livepeer's gateway accepts.
    #[error("invalid JSON request body: {0}; nothing was started")]
    InvalidBody(String),
    /// `params` is not a JSON object (or a string holding one).
    #[error(
        "invalid model params: {0}; `params` must be a JSON object (or a string holding one); nothing was started"
    )]
    InvalidParams(String),
    /// The stream id (or `stream_name`) cannot name a stream.
    #[error("{0}; nothing was started")]
    InvalidStreamId(String),
    /// The request asks for something the gateway does not do (yet).
    #[error("{0}; nothing was started")]
    Unsupported(String),
    /// `rtmp_output` is not a list of RTMP destinations.
    #[error("invalid rtmp_output: {0}; nothing was started")]
    InvalidOutput(String),
    /// The update's `Livepeer` header names another capability than the stream's.
    #[error("the stream runs capability '{stream}', the update names '{update}'; nothing was sent")]
    CapabilityMismatch {
        /// The stream's.
        stream: String,
        /// The update's.
        update: String,
    },
    /// A stream with this id is live.
    #[error("stream already exists: {0}")]
    Duplicate(String),
    /// No stream with this id.
    #[error("stream not found: {0}")]
    NotFound(String),
    /// The stream has ended (its status still says why).
    #[error("stream {id} has ended: {reason}")]
    Ended {
        /// The stream.
        id: String,
        /// Why it ended.
        reason: String,
    },
    /// `limits.max_streams` streams are live.
    #[error("the gateway is at its limit of {0} live streams (limits.max_streams); retry later")]
    Limit(usize),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// No orchestrator accepted the stream (each candidate's answer is in the attempts).
    #[error("no orchestrator accepted the stream: {0}")]
    Start(RouteError),
    /// The orchestrators tried did not accept the stream within the job's `timeout_seconds`.
    #[error("no orchestrator accepted the stream within timeout_seconds ({seconds} s){}", describe(.attempts))]
    StartTimeout {
        /// The job's `timeout_seconds`.
        seconds: u64,
        /// The candidates that refused before the time was up.
        attempts: Vec<crate::route::AttemptReport>,
    },
    /// The stream was not asked for data output (`enable_data_output`).
    #[error("Stream data not available: the stream was started without parameters.enable_data_output")]
    NoData,
    /// The stream was not asked for this media direction.
    #[error("the stream was started without parameters.{0}")]
    NoMedia(&'static str),
    /// A segment sent to the stream's ingress was over the limit.
    #[error("the segment is over the limit of {0} bytes (streams.max_segment_bytes)")]
    SegmentTooLarge(usize),
    /// The orchestrator could not be reached for an update.
    #[error("the orchestrator did not answer the update: {0}")]
    Upstream(String),
    /// The stream's task did not answer in time.
    #[error("the stream did not answer in time")]
    Unavailable,
}

fn describe(attempts: &[crate::route::AttemptReport]) -> String {
    if attempts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> =
        attempts.iter().map(|a| format!("{}: {} {}", a.orchestrator, a.result, a.detail)).collect();
    format!("; refused by {}", parts.join("; "))
}

impl StreamError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            StreamError::InvalidBody(_) => "invalid-json",
            StreamError::InvalidParams(_) => "invalid-params",
            StreamError::InvalidStreamId(_) => "invalid-stream-id",
            StreamError::Unsupported(_) => "unsupported",
            StreamError::InvalidOutput(_) => "invalid-rtmp-output",
            StreamError::CapabilityMismatch { .. } => "capability-mismatch",
            StreamError::Duplicate(_) => "stream-exists",
            StreamError::NotFound(_) => "stream-not-found",
            StreamError::Ended { .. } => "stream-ended",
            StreamError::Limit(_) => "stream-limit",
            StreamError::ShuttingDown => "shutting-down",
            StreamError::Start(e) => e.code(),
            StreamError::StartTimeout { .. } => "start-timeout",
            StreamError::NoData => "data-not-enabled",
            StreamError::NoMedia(_) => "media-not-enabled",
            StreamError::SegmentTooLarge(_) => "segment-too-large",
            StreamError::Upstream(_) => "upstream-failed",
            StreamError::Unavailable => "overloaded",
        }
    }

    /// The attempts made, for the errors that have them.
    pub fn attempts(&self) -> &[crate::route::AttemptReport] {
        match self {
            StreamError::Start(e) => e.attempts(),
            StreamError::StartTimeout { attempts, .. } => attempts,
            _ => &[],
        }
    }
}
