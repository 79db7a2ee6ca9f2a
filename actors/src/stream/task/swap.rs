//! The swap step: the old pair is charged for what made the stream leave, its orchestrator told
//! to stop (without waiting), and the stream placed again on the current board without that
//! orchestrator (then, when none other takes it, on the same one: a lone orchestrator restarts it),
//! while the task keeps taking commands.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::clock::unix_ms_now;
use crate::metrics as m;
use crate::outcome::{Outcome, Refusal};
use crate::protocol::client::UpstreamError;

use super::Task;
use crate::stream::machine::{Decision, EndReason, SwapReason};
use crate::stream::place::{self, Accepted};
use crate::stream::session::Session;
use crate::stream::{Command, UpdateAnswer};

impl Task {
    /// Leaves the session's orchestrator and places the stream again; `Err` when the stream
    /// ended instead (then it is already over).
    pub(super) async fn swap(
        &self,
        mut session: Session,
        reason: SwapReason,
        detail: &str,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<Session, ()> {
        metrics::counter!(m::STREAM_SWAPS_TOTAL, "capability" => self.label.value(), "reason" => reason.as_str())
            .increment(1);
        let decision = self.stream.snapshot.lock().machine.trigger(reason, detail, Instant::now(), unix_ms_now());
        let old = session.accepted.picked.key.orchestrator.clone();
        tracing::warn!(stream = %self.stream.id, orchestrator = %old, reason = reason.as_str(), detail, "stream leaves its orchestrator");
        self.stream.status.lock().set_error(format!("{}: {detail}", reason.as_str()), unix_ms_now());
        if let Decision::End(end) = decision {
            self.end(Some(session), end, Bytes::from(format!("{}: {detail}", reason.as_str()))).await;
            return Err(());
        }
        session.abort();
        let outcome = swap_outcome(reason, detail, session.age());
        let paid = reason == SwapReason::PaymentRefused;
        place::account(&self.ctx.router, &session.accepted.picked, None, &outcome, session.age(), paid).await;
        let stopping =
            self.stop_upstream_later(&session.accepted, Bytes::from(format!("{}: {detail}", reason.as_str())));
        self.stream.snapshot.lock().orchestrator = None;
        drop(session);
        // Another orchestrator first; when none can take it, the one it left may (its pair was
        // just charged: it is a candidate only while it stays routable), so a deployment with one
        // orchestrator restarts the stream there instead of ending it. The swap bound stops a loop.
        let mut placed = self.place_again(&[old], commands).await?;
        if placed.is_err() {
            // The same stream id again there: only once it has been told to stop the last one.
            let _ = stopping.await;
            placed = self.place_again(&[], commands).await?;
        }
        match placed {
            Ok(accepted) => {
                tracing::info!(stream = %self.stream.id, orchestrator = %accepted.picked.key.orchestrator, "stream moved to another orchestrator");
                Ok(self.begin(accepted))
            }
            Err(why) => {
                self.end(None, EndReason::NoOrchestrator(why), Bytes::new()).await;
                Err(())
            }
        }
    }

    /// Places the stream again, leaving out `exclude`, within the stream's `timeout_seconds`, while
    /// still taking commands: `Err(())` when a stop ended the stream meanwhile, `Ok(Err(why))` when
    /// nothing accepted it.
    async fn place_again(
        &self,
        exclude: &[crate::orchestrator::OrchestratorId],
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<Result<Accepted, String>, ()> {
        let (stream, label) = (self.stream.clone(), self.label.clone());
        let placing = place::place(&self.ctx.router, &self.spec, exclude, |r| {
            stream.refused_start();
            metrics::counter!(m::STREAM_SWAPS_TOTAL, "capability" => label.value(), "reason" => SwapReason::StartRefused.as_str()).increment(1);
            tracing::debug!(stream = %stream.id, orchestrator = %r.orchestrator, "swap candidate refused");
        });
        tokio::pin!(placing);
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = &mut placing => return Ok(r.map_err(|e| e.to_string())),
                () = &mut deadline => return Ok(Err(format!("none accepted within timeout_seconds ({} s)", self.timeout.as_secs()))),
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop { by, body, reply }) => {
                        let answer = self.end(None, by.reason(), body).await;
                        if let Some(r) = reply {
                            let _ = r.send(answer);
                        }
                        return Err(());
                    }
                    Some(Command::Update { body, reply, .. }) => {
                        // Kept, and replayed on the next orchestrator's control channel.
                        *self.stream.params.lock() = Some(body);
                        let _ = reply.send(Ok(UpdateAnswer::queued()));
                    }
                    None => {
                        self.end(None, EndReason::Stopped, Bytes::new()).await;
                        return Err(());
                    }
                },
            }
        }
    }
}

/// How a swap is charged to the pair it left: a silence as a time-out, a vanished or failing
/// channel as a broken transport, a refused payment as a refusal.
fn swap_outcome(reason: SwapReason, detail: &str, age: Duration) -> Outcome {
    match reason {
        SwapReason::EventsTimeout | SwapReason::NoOutput | SwapReason::IngressBackedUp => {
            Outcome::Failed(UpstreamError::Timeout(age))
        }
        SwapReason::PaymentRefused => Outcome::Refused(Refusal::PaymentRejected, detail.to_string()),
        SwapReason::ChannelGone | SwapReason::ChannelClosed | SwapReason::ChannelFailing | SwapReason::StartRefused => {
            Outcome::Failed(UpstreamError::Transport(format!("stream {}: {detail}", reason.as_str())))
        }
    }
}
