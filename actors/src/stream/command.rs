//! What a stream's task is asked by the handlers (stop, update) and what it answers.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::StreamError;

/// Who stops a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopper {
    /// The client (`POST .../stop`).
    Client,
    /// The client closed its ingress (`DELETE .../in`).
    IngressClosed,
    /// An operator (`DELETE /admin/streams/{id}`).
    Operator,
    /// The gateway, shutting down.
    Shutdown,
}

/// The orchestrator's answer to a stream's stop.
#[derive(Debug, Clone, Default)]
pub struct StopAnswer {
    /// Its status, when it answered.
    pub status: Option<u16>,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Bytes,
    /// Why it did not answer.
    pub error: Option<String>,
    /// Which orchestrator was told.
    pub orchestrator: Option<String>,
}

/// The orchestrator's answer to an update (relayed to the client).
#[derive(Debug, Clone)]
pub struct UpdateAnswer {
    /// Its status (202 when the stream is between orchestrators and the params were kept).
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Bytes,
    /// Which orchestrator answered (empty when queued).
    pub orchestrator: String,
}

impl UpdateAnswer {
    pub(super) fn queued() -> Self {
        Self {
            status: 202,
            content_type: Some("application/json".into()),
            body: Bytes::from_static(
                br#"{"queued":true,"detail":"the stream is moving to another orchestrator; the params are replayed there"}"#,
            ),
            orchestrator: String::new(),
        }
    }
}

/// A message to a stream's task.
pub(crate) enum Command {
    Stop {
        by: Stopper,
        body: Bytes,
        reply: Option<oneshot::Sender<StopAnswer>>,
    },
    Update {
        body: Bytes,
        content_type: Option<String>,
        timeout_seconds: u64,
        reply: oneshot::Sender<Result<UpdateAnswer, StreamError>>,
    },
}
