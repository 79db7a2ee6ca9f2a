//! One stream's task: place it, run sessions, swap on triggers, end with a reason. It runs on the
//! HTTP worker thread that accepted the start (with that worker's upstream client), so its
//! channel tasks and upstream calls never cross threads; handlers on any thread reach it by its
//! command queue. Its steps, in order:
//!
//! 1. **place** the stream (`place.rs`): within the job's `timeout_seconds`, or the start fails
//!    with each candidate's answer;
//! 2. **run** a session (`session.rs`) and watch it: triggers from its channels, the events and
//!    output watchdogs, the payment timer, commands (stop, update);
//! 3. **swap** on a trigger: the old pair is charged a failure and told `/ai/stream/stop` with the
//!    reason, the machine decides (the swap bound), and the current board is ranked again without
//!    that orchestrator;
//! 4. **end**: the last orchestrator is told to stop, the stream's channels and data feed close,
//!    the registry keeps the stream (and why it ended) for its status.

mod end;
mod swap;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::metrics as m;
use crate::route::{AttemptReport, Router};

use super::machine::{EndReason, SwapReason};
use super::pay::{self, Paid, PayFailure};
use super::place::{self, Accepted, Spec};
use super::session::{Session, Trigger};
use super::upstream::{self, stream_header, Call};
use super::{Command, Stream, StreamError, StreamSettings, Streams, UpdateAnswer};

/// What the task needs besides its stream.
pub(crate) struct Ctx {
    pub(crate) router: Router,
    pub(crate) streams: Streams,
    pub(crate) settings: Arc<StreamSettings>,
}

/// Runs a stream from its start to its end.
pub(crate) async fn run(
    ctx: Ctx,
    stream: Arc<Stream>,
    spec: Spec,
    mut commands: mpsc::Receiver<Command>,
    started: oneshot::Sender<Result<(), StreamError>>,
) {
    let timeout = Duration::from_secs(spec.job.client.timeout_seconds);
    let refused = Rc::new(RefCell::new(Vec::<AttemptReport>::new()));
    let first = {
        let noted = refused.clone();
        let stream_ref = stream.clone();
        let placing = place::place(&ctx.router, &spec, &[], move |r| {
            noted.borrow_mut().push(r.clone());
            stream_ref.refused_start();
        });
        tokio::select! {
            r = placing => r.map_err(StreamError::Start),
            () = tokio::time::sleep(timeout) => Err(StreamError::StartTimeout {
                seconds: spec.job.client.timeout_seconds,
                attempts: refused.borrow().clone(),
            }),
        }
    };
    let accepted = match first {
        Ok(a) => a,
        Err(e) => {
            let outcome = e.code();
            // Only capabilities some orchestrator offers are label values (`unknown` otherwise).
            let label = ctx.router.scoreboard.label(&stream.capability);
            metrics::counter!(m::STREAM_STARTS_TOTAL, "capability" => label.value(), "outcome" => outcome).increment(1);
            tracing::info!(stream = %stream.id, capability = %stream.capability, error = %e, "stream start failed");
            ctx.streams.forget(&stream.id);
            let _ = started.send(Err(e));
            return;
        }
    };
    let cap = stream.capability.to_string();
    // The capability's board exists (a pair of it accepted the stream): its label.
    let label = accepted.picked.label().clone();
    metrics::counter!(m::STREAM_STARTS_TOTAL, "capability" => label.value(), "outcome" => "started").increment(1);
    metrics::gauge!(m::STREAMS_ACTIVE, "capability" => label.value()).increment(1.0);
    tracing::info!(stream = %stream.id, capability = %cap, orchestrator = %accepted.picked.key.orchestrator, "stream started");
    let (tx, mut triggers) = mpsc::channel::<Trigger>(4);
    let task = Task {
        ctx,
        stream: stream.clone(),
        spec,
        sessions: std::cell::Cell::new(0),
        unpaid_since: std::cell::Cell::new(Instant::now()),
        label,
        triggers: tx,
        timeout,
    };
    let mut session = task.begin(accepted);
    // The client hears of the start only once the channels are being set up.
    if started.send(Ok(())).is_err() {
        // The client went away before the answer: the stream is not wanted.
        task.end(
            Some(session),
            EndReason::Stopped,
            Bytes::from_static(b"the client went away before the start answer"),
        )
        .await;
        return;
    }
    let mut pay_timer = tokio::time::interval_at(
        tokio::time::Instant::now() + task.ctx.settings.payment_interval,
        task.ctx.settings.payment_interval,
    );
    let mut watch = tokio::time::interval(task.ctx.settings.watch_every);
    loop {
        let (reason, detail) = tokio::select! {
            Some(t) = triggers.recv() => {
                if t.session != session.id {
                    continue;
                }
                (t.reason, t.detail)
            }
            _ = watch.tick() => match task.watchdogs(&session) {
                Some(t) => t,
                None => continue,
            },
            _ = pay_timer.tick() => match task.pay(&session).await {
                Ok(()) => continue,
                Err(Err(end)) => {
                    task.end(Some(session), end, Bytes::new()).await;
                    return;
                }
                Err(Ok(t)) => t,
            },
            cmd = commands.recv() => match cmd {
                Some(Command::Stop { by, body, reply }) => {
                    let answer = task.end(Some(session), by.reason(), body).await;
                    if let Some(r) = reply {
                        let _ = r.send(answer);
                    }
                    return;
                }
                Some(Command::Update { body, content_type, timeout_seconds, reply }) => {
                    task.update(&session, body, content_type, timeout_seconds, reply);
                    continue;
                }
                None => {
                    task.end(Some(session), EndReason::Stopped, Bytes::new()).await;
                    return;
                }
            },
        };
        session = match task.swap(session, reason, &detail, &mut commands).await {
            Ok(next) => next,
            Err(()) => return,
        };
    }
}

struct Task {
    ctx: Ctx,
    stream: Arc<Stream>,
    spec: Spec,
    sessions: std::cell::Cell<u64>,
    /// Since when the current session's time has not been debited (its start, or the last
    /// payment round).
    unpaid_since: std::cell::Cell<Instant>,
    /// The `capability` label of the stream's metrics.
    label: m::CapabilityLabel,
    triggers: mpsc::Sender<Trigger>,
    timeout: Duration,
}

impl Task {
    /// Starts a session on `accepted`.
    fn begin(&self, accepted: Accepted) -> Session {
        self.sessions.set(self.sessions.get() + 1);
        self.unpaid_since.set(Instant::now());
        let orchestrator = accepted.picked.key.orchestrator.to_string();
        {
            let mut snap = self.stream.snapshot.lock();
            snap.machine.accepted(&orchestrator);
            snap.orchestrator = Some((orchestrator, accepted.service_addr.to_string()));
            if accepted.paid {
                snap.payments.sent += 1;
            }
        }
        Session::start(
            self.sessions.get(),
            accepted,
            &self.stream,
            &self.ctx.settings,
            &self.ctx.router.client,
            self.triggers.clone(),
            self.label.clone(),
        )
    }

    /// The events and output watchdogs.
    fn watchdogs(&self, session: &Session) -> Option<(SwapReason, String)> {
        let (event_timeout, output_timeout) = self.ctx.settings.timeouts(&self.stream.capability);
        let now = Instant::now();
        let since =
            |t: Option<Instant>| now.saturating_duration_since(t.map_or(session.started, |t| t.max(session.started)));
        let last_event = self.stream.status.lock().last_event;
        if since(last_event) > event_timeout {
            return Some((SwapReason::EventsTimeout, format!("no event from the runner for {event_timeout:?}")));
        }
        if output_timeout.is_zero() || self.stream.ingress.is_none() || self.stream.egress.is_none() {
            return None;
        }
        let a = self.stream.activity.lock();
        let input_recent = a.last_input.is_some_and(|t| now.saturating_duration_since(t) < output_timeout / 2);
        if input_recent && since(a.last_output) > output_timeout {
            return Some((
                SwapReason::NoOutput,
                format!("no output segment for {output_timeout:?} while ingress flowed"),
            ));
        }
        None
    }

    /// One payment round: `Ok` when the stream goes on, a trigger when it moves, an end reason
    /// when it cannot be paid for at all.
    async fn pay(&self, session: &Session) -> Result<(), Result<(SwapReason, String), EndReason>> {
        let now = Instant::now();
        let used = now.saturating_duration_since(self.unpaid_since.replace(now));
        let r =
            pay::pay(&self.ctx.router, &self.stream.id, &session.accepted, self.ctx.settings.token_timeout, used).await;
        let result = match &r {
            Ok(Paid::Sent) => "sent",
            Ok(Paid::NotDue) => "not-due",
            Err(PayFailure::Refused(_)) => "refused",
            Err(PayFailure::OverLimit(_)) => "over-limit",
            Err(PayFailure::SpendCap(_)) => "spend-cap",
            Err(PayFailure::Token(_)) => "token-failed",
        };
        metrics::counter!(m::STREAM_PAYMENTS_TOTAL, "capability" => self.label.value(), "result" => result)
            .increment(1);
        let mut snap = self.stream.snapshot.lock();
        match r {
            Ok(Paid::Sent) => {
                snap.payments.sent += 1;
                Ok(())
            }
            Ok(Paid::NotDue) => {
                snap.payments.not_due += 1;
                Ok(())
            }
            Err(PayFailure::Token(e)) => {
                snap.payments.last_error = Some(format!("no fresh token: {e}"));
                Ok(())
            }
            Err(PayFailure::Refused(e)) => {
                snap.payments.refused += 1;
                snap.payments.last_error = Some(e.clone());
                Err(Ok((SwapReason::PaymentRefused, format!("the orchestrator refused the stream payment: {e}"))))
            }
            Err(PayFailure::OverLimit(e)) => {
                snap.payments.last_error = Some(e.to_string());
                Err(Ok((SwapReason::PaymentRefused, format!("no payment can be made there: {e}"))))
            }
            Err(PayFailure::SpendCap(e)) => {
                snap.payments.last_error = Some(e.to_string());
                Err(Err(EndReason::PaymentLimit(e.to_string())))
            }
        }
    }

    /// Forwards an update to the session's orchestrator (on its own task: the stream keeps being
    /// watched meanwhile). The params are kept first, for the next orchestrator's control channel.
    fn update(
        &self,
        session: &Session,
        body: Bytes,
        content_type: Option<String>,
        timeout_seconds: u64,
        reply: oneshot::Sender<Result<UpdateAnswer, StreamError>>,
    ) {
        *self.stream.params.lock() = Some(body.clone());
        let router = self.ctx.router.clone();
        let (id, cap) = (self.stream.id.clone(), self.stream.capability.to_string());
        let service_addr = session.accepted.service_addr.clone();
        let view = session.accepted.picked.view.read().clone();
        actix::spawn(async move {
            let header = stream_header(&*router.signer, &id, &cap, timeout_seconds);
            let label = router.scoreboard.label(&view.key.capability);
            let payment = router.payments.prepare(&view, &label, timeout_seconds, &*router.signer).ok().flatten();
            let answer = upstream::post(
                &router.client,
                Call {
                    service_addr: &service_addr,
                    path: upstream::UPDATE,
                    header: &header,
                    body,
                    content_type: content_type.as_deref(),
                    payment: payment.as_deref(),
                    timeout: Duration::from_secs(timeout_seconds),
                },
            )
            .await;
            let r = answer
                .map(|a| UpdateAnswer {
                    status: a.status,
                    content_type: a.header("content-type").map(str::to_string),
                    body: a.body,
                    orchestrator: service_addr.to_string(),
                })
                .map_err(|e| StreamError::Upstream(e.to_string()));
            let _ = reply.send(r);
        });
    }
}

impl Stream {
    fn refused_start(&self) {
        self.snapshot.lock().machine.refused();
        self.counters.start_refusals.fetch_add(1, Ordering::Relaxed);
    }
}
