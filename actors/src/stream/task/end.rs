//! The end step: the orchestrator is told `/ai/stream/stop` (bounded), the stream's channels close,
//! its metrics are closed out and the registry keeps it, ended, for its status.

use std::time::Duration;

use bytes::Bytes;

use crate::clock::unix_ms_now;
use crate::metrics as m;
use crate::route::Router;

use super::Task;
use crate::stream::machine::EndReason;
use crate::stream::place::Accepted;
use crate::stream::session::Session;
use crate::stream::upstream::{self, stream_header, Call};
use crate::stream::{StopAnswer, Stopper};

/// Bound on `/ai/stream/stop` (go-livepeer's stop job: 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Task {
    /// Tells the orchestrator of `accepted` to stop the stream, without waiting (a swap goes on).
    pub(super) fn stop_upstream_later(&self, accepted: &Accepted, body: Bytes) -> tokio::task::JoinHandle<()> {
        let router = self.ctx.router.clone();
        let (id, cap) = (self.stream.id.clone(), self.stream.capability.to_string());
        let service_addr = accepted.service_addr.clone();
        actix::spawn(async move {
            let _ = stop_upstream(&router, &id, &cap, &service_addr, body).await;
        })
    }

    /// Ends the stream: its orchestrator (if any) is told to stop and answers, its channels close,
    /// the registry keeps it as ended.
    pub(super) async fn end(&self, session: Option<Session>, reason: EndReason, body: Bytes) -> StopAnswer {
        let cap = self.stream.capability.to_string();
        let answer = match session {
            Some(mut s) => {
                s.abort();
                let a = stop_upstream(&self.ctx.router, &self.stream.id, &cap, &s.accepted.service_addr, body).await;
                let orchestrator = s.accepted.service_addr.to_string();
                drop(s);
                StopAnswer { orchestrator: Some(orchestrator), ..a }
            }
            None => StopAnswer::default(),
        };
        let reason = self.stream.snapshot.lock().machine.end(reason).clone();
        tracing::info!(stream = %self.stream.id, capability = %cap, reason = %reason.describe(), "stream ended");
        if !matches!(reason, EndReason::Stopped | EndReason::StoppedByOperator | EndReason::Shutdown) {
            self.stream.status.lock().set_error(reason.describe(), unix_ms_now());
        }
        self.stream.close_channels();
        metrics::gauge!(m::STREAMS_ACTIVE, "capability" => self.label.value()).decrement(1.0);
        metrics::counter!(m::STREAM_ENDS_TOTAL, "capability" => self.label.value(), "reason" => reason.as_str())
            .increment(1);
        metrics::histogram!(m::STREAM_DURATION_SECONDS, "capability" => self.label.value())
            .record(self.stream.created.elapsed().as_secs_f64());
        self.ctx.streams.retire(&self.stream);
        answer
    }
}

/// Sends `/ai/stream/stop` for stream `id` with `body` (the client's, or the reason); bounded.
async fn stop_upstream(router: &Router, id: &str, cap: &str, service_addr: &str, body: Bytes) -> StopAnswer {
    let header = stream_header(&*router.signer, id, cap, STOP_TIMEOUT.as_secs());
    let answer = upstream::post(
        &router.client,
        Call {
            service_addr,
            path: upstream::STOP,
            header: &header,
            body,
            content_type: None,
            payment: None,
            timeout: STOP_TIMEOUT,
        },
    )
    .await;
    match answer {
        Ok(a) => StopAnswer {
            status: Some(a.status),
            content_type: a.header("content-type").map(str::to_string),
            body: a.body,
            error: None,
            orchestrator: None,
        },
        Err(e) => {
            tracing::info!(stream = %id, error = %e, "the orchestrator did not answer the stream's stop");
            StopAnswer { error: Some(e.to_string()), ..StopAnswer::default() }
        }
    }
}

impl Stopper {
    pub(super) fn reason(self) -> EndReason {
        match self {
            Stopper::Client | Stopper::IngressClosed => EndReason::Stopped,
            Stopper::Operator => EndReason::StoppedByOperator,
            Stopper::Shutdown => EndReason::Shutdown,
        }
    }
}
