//! One orchestrator's turn at a stream: the channels the gateway runs against it, each a task
//! on the stream's thread, each reporting what should move the stream elsewhere as a
//! [`Trigger`]:
//!
//! - [`control`]: publish the latest params once, then a keep-alive every 10 s;
//! - [`events`]: subscribe to the runner's events into the status store;
//! - [`data`]: subscribe to the runner's data lines into the stream's feed;
//! - [`ingress`]: relay the stream's ingress channel to the orchestrator, segment by segment;
//! - [`egress`]: relay the orchestrator's output into the stream's egress channel.
//!
//! The stream's own channels (ingress, egress, data) outlive a session: a swap ends the session's
//! tasks and starts the next session's against the same channels, so the client's URLs stay.

mod control;
mod data;
mod egress;
mod events;
mod ingress;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::machine::SwapReason;
use super::place::Accepted;
use super::{Stream, StreamSettings};
use crate::protocol::trickle::ChannelEnd;

/// Something that should move the stream to another orchestrator.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    /// The session it is about (a late trigger of an earlier session is ignored).
    pub(crate) session: u64,
    /// Why.
    pub(crate) reason: SwapReason,
    /// What happened.
    pub(crate) detail: String,
}

/// Where a session's tasks send triggers (a small bound: the first one moves the stream).
pub(crate) type Triggers = mpsc::Sender<Trigger>;

/// What each channel task of a session gets.
#[derive(Clone)]
pub(crate) struct Pump {
    pub(crate) stream: Arc<Stream>,
    pub(crate) settings: Arc<StreamSettings>,
    pub(crate) client: awc::Client,
    pub(crate) triggers: Triggers,
    pub(crate) session: u64,
    /// The orchestrator's `service_addr` (for the events' `orchestrator_info`).
    pub(crate) orchestrator_url: Arc<str>,
    /// The `capability` label of the stream's metrics.
    pub(crate) label: crate::metrics::CapabilityLabel,
}

impl Pump {
    /// Reports a trigger (dropped when one is already waiting: the first moves the stream).
    pub(crate) fn trigger(&self, reason: SwapReason, detail: impl Into<String>) {
        let _ = self.triggers.try_send(Trigger { session: self.session, reason, detail: detail.into() });
    }

    /// Reports that `channel` ended.
    pub(crate) fn channel_ended(&self, channel: &str, end: &ChannelEnd) {
        let reason = match end {
            ChannelEnd::Gone => SwapReason::ChannelGone,
            ChannelEnd::Closed => SwapReason::ChannelClosed,
            ChannelEnd::Failing(_) => SwapReason::ChannelFailing,
        };
        self.trigger(reason, format!("{channel} channel: {end}"));
    }
}

/// A running session.
pub(crate) struct Session {
    /// Its number within the stream (1 for the first orchestrator).
    pub(crate) id: u64,
    /// The pair, its slot and the orchestrator's channels.
    pub(crate) accepted: Accepted,
    /// When it started.
    pub(crate) started: Instant,
    tasks: Vec<JoinHandle<()>>,
}

impl Session {
    /// Starts the channel tasks of `accepted` for `stream`.
    pub(crate) fn start(
        id: u64,
        accepted: Accepted,
        stream: &Arc<Stream>,
        settings: &Arc<StreamSettings>,
        client: &awc::Client,
        triggers: Triggers,
        label: crate::metrics::CapabilityLabel,
    ) -> Self {
        let pump = Pump {
            stream: stream.clone(),
            settings: settings.clone(),
            client: client.clone(),
            triggers,
            session: id,
            orchestrator_url: accepted.service_addr.clone(),
            label,
        };
        let urls = &accepted.urls;
        let mut tasks = vec![
            actix::spawn(control::run(pump.clone(), urls.control.clone())),
            actix::spawn(events::run(pump.clone(), urls.events.clone())),
        ];
        if let (Some(url), true) = (&urls.data, stream.data.is_some()) {
            tasks.push(actix::spawn(data::run(pump.clone(), url.clone())));
        }
        if let (Some(url), Some(input)) = (&urls.publish, &stream.ingress) {
            tasks.push(actix::spawn(ingress::run(pump.clone(), url.clone(), input.clone())));
        }
        if let (Some(url), Some(output)) = (&urls.subscribe, &stream.egress) {
            tasks.push(actix::spawn(egress::run(pump.clone(), url.clone(), output.clone())));
        }
        stream.activity.lock().session_started(Instant::now());
        Self { id, accepted, started: Instant::now(), tasks }
    }

    /// How long it has run.
    pub(crate) fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends its tasks (their requests are dropped, closing their connections).
    pub(crate) fn abort(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.abort();
    }
}
