//! Live streams: go-livepeer's BYOC stream API (`/process/stream/*`) routed with the same health
//! model as batch jobs. A module tree beside [`route`](crate::route), reusing its selection, the
//! pair accounting, the job header and signer, the payments core and the error mapping:
//!
//! - [`request`]: what a start asks for and the URLs it is answered with (pure);
//! - [`machine`]: a stream's life as a plain state machine (starting, running, swapping, ended
//!   with a reason; swap reasons counted; the swap bound);
//! - `place.rs`: choosing an orchestrator (the batch job's `JobState` and `Router::place`) and the
//!   start call, each refusal moving on to the next candidate;
//! - `session.rs` and `session/`: one orchestrator's turn, the trickle channels the gateway runs
//!   against it (control, events, data, ingress, egress), each reporting swap triggers;
//! - `task.rs`: one stream's task (place, run, swap, end);
//! - `pay.rs`: stream payments with a fresh token from the current orchestrator;
//! - `status.rs`, `data.rs`: the status store and the data feed behind `/status` and `/data`;
//! - `report.rs`: what the admin API shows;
//! - `upstream.rs`: the `/ai/stream/*` calls;
//! - [`error`]: [`StreamError`], mapped to statuses in `src/http/error.rs`.
//!
//! The stream's media edges are segment channels (`protocol::trickle::window::Channel`): its
//! ingress is written by whatever receives the client's media (today the gateway's trickle
//! endpoint, `POST .../in/{seq}`; RTMP and WHIP segmenters later) and read by the session's
//! ingress relay; its egress is written by the session's egress relay and read by whatever
//! serves the output (`GET .../out/{seq}`; RTMP outputs later). Neither changes across swaps.

mod command;
mod data;
pub mod edges;
pub mod error;
pub mod machine;
mod pay;
mod place;
mod report;
pub mod request;
mod session;
mod settings;
mod status;
mod task;
mod upstream;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream as FutStream;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::capability::Capability;
use crate::clock::unix_ms_now;
use crate::protocol::header::{encode_job_request, ClientJob};
use crate::protocol::trickle::window::{self, Channel};
use crate::route::{Job, Router};

pub(crate) use command::Command;
pub use command::{StopAnswer, Stopper, UpdateAnswer};
pub use edges::{EdgeReport, EdgeSettings, OutputReport};
pub use error::StreamError;
pub use machine::{EndReason, SwapBound, SwapReason};
pub use report::{PaymentCounts, StreamReport};
pub use request::{Features, StreamUrls};
pub use settings::StreamSettings;

use data::DataFeed;
use machine::Machine;
use status::StatusStore;

/// Counters of one stream, written by its channel tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) segments_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) in_dropped: AtomicU64,
    pub(crate) segments_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) out_dropped: AtomicU64,
    pub(crate) start_refusals: AtomicU64,
}

/// When media last moved (the output watchdog).
#[derive(Debug, Default)]
pub(crate) struct Activity {
    pub(crate) last_input: Option<Instant>,
    pub(crate) last_output: Option<Instant>,
    pub(crate) session_started: Option<Instant>,
}

impl Activity {
    pub(crate) fn session_started(&mut self, at: Instant) {
        self.session_started = Some(at);
    }
}

/// The task's state as others read it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) machine: Machine,
    /// The orchestrator running it: id and `service_addr`.
    pub(crate) orchestrator: Option<(String, String)>,
    pub(crate) payments: PaymentCounts,
    pub(crate) ended_at_unix_ms: Option<u64>,
}

/// One stream, as shared between its task and the handlers.
pub struct Stream {
    pub(crate) id: String,
    pub(crate) capability: Capability,
    pub(crate) request_id: String,
    pub(crate) features: Features,
    pub(crate) urls: StreamUrls,
    pub(crate) created: Instant,
    pub(crate) created_unix_ms: u64,
    pub(crate) ingress: Option<Arc<Channel>>,
    pub(crate) egress: Option<Arc<Channel>>,
    pub(crate) data: Option<DataFeed>,
    pub(crate) status: Mutex<StatusStore>,
    pub(crate) counters: Counters,
    pub(crate) activity: Mutex<Activity>,
    pub(crate) snapshot: Mutex<Snapshot>,
    /// The latest update's body, replayed on every new control channel.
    pub(crate) params: Mutex<Option<Bytes>>,
    /// Where the egress is pushed by RTMP (the start's `rtmp_output`).
    pub(crate) rtmp_outputs: Vec<String>,
    /// What the media edges report (written by `crate::media`).
    pub(crate) edges: Mutex<EdgeReport>,
    commands: mpsc::Sender<Command>,
    ended: watch::Sender<bool>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).field("capability", &self.capability).finish()
    }
}

impl Stream {
    /// Whether it has ended.
    pub fn is_ended(&self) -> bool {
        self.snapshot.lock().machine.is_ended()
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A watch that turns `true` when it ends.
    pub(crate) fn ended_watch(&self) -> watch::Receiver<bool> {
        self.ended.subscribe()
    }

    fn end_reason(&self) -> Option<EndReason> {
        match self.snapshot.lock().machine.state() {
            machine::State::Ended(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Closes its channels: readers and subscribers get their end.
    fn close_channels(&self) {
        if let Some(c) = &self.ingress {
            c.close();
        }
        if let Some(c) = &self.egress {
            c.close();
        }
        if let Some(d) = &self.data {
            d.close();
        }
        self.snapshot.lock().ended_at_unix_ms = Some(unix_ms_now());
        self.ended.send_replace(true);
    }
}

/// The SSE body of a stream's `/data`.
pub type DataEvents = Pin<Box<dyn FutStream<Item = Result<Bytes, Infallible>>>>;

/// What the HTTP layer hands over to start a stream.
#[derive(Debug)]
pub struct StartSpec {
    /// The client's decoded `Livepeer` header.
    pub client: ClientJob,
    /// The `StartRequest` body.
    pub body: Bytes,
    /// The gateway's public URL (the base of the stream's URLs), without a trailing `/`.
    pub base_url: String,
    /// The request id.
    pub request_id: String,
}

/// The gateway's streams: live ones and the last ended ones (for their status).
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Registry>,
}

struct Registry {
    settings: Arc<StreamSettings>,
    live: Mutex<HashMap<String, Arc<Stream>>>,
    ended: Mutex<VecDeque<Arc<Stream>>>,
    closing: AtomicBool,
}

/// Bound on a handler's wait for a stream's task to take a command.
const COMMAND_WAIT: Duration = Duration::from_secs(5);

impl Streams {
    /// An empty registry.
    pub fn new(settings: StreamSettings) -> Self {
        Self {
            inner: Arc::new(Registry {
                settings: Arc::new(settings),
                live: Mutex::new(HashMap::new()),
                ended: Mutex::new(VecDeque::new()),
                closing: AtomicBool::new(false),
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &StreamSettings {
        &self.inner.settings
    }

    /// Live streams now.
    pub fn live_count(&self) -> usize {
        self.inner.live.lock().len()
    }

    /// Starts a stream: answers once an orchestrator accepted it, or with why none did within
    /// the job's `timeout_seconds`. The stream's task runs on this thread, with `router`.
    pub async fn start(&self, router: &Router, spec: StartSpec) -> Result<StreamUrls, StreamError> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(StreamError::ShuttingDown);
        }
        let start = request::parse_start(&spec.body, request::random_id)?;
        let features = Features::of(&spec.client.parameters);
        if !start.rtmp_outputs.is_empty() && !features.egress {
            return Err(StreamError::InvalidOutput(
                "an RTMP output carries the stream's processed video: start it with parameters.enable_video_egress"
                    .into(),
            ));
        }
        let rtmp_base = self.inner.settings.edges.rtmp_port.map(|port| edges::rtmp_base(&spec.base_url, port));
        let urls = StreamUrls::new(
            &spec.base_url,
            &start.stream_id,
            features,
            rtmp_base.as_deref(),
            self.inner.settings.edges.whip,
            &start.rtmp_outputs,
        );
        let (commands, rx) = mpsc::channel(16);
        let settings = &self.inner.settings;
        let snapshot = Snapshot {
            machine: Machine::new(settings.swap_bound),
            orchestrator: None,
            payments: PaymentCounts::default(),
            ended_at_unix_ms: None,
        };
        let stream = Arc::new(Stream {
            id: start.stream_id.clone(),
            capability: spec.client.capability.clone(),
            request_id: spec.request_id.clone(),
            features,
            urls: urls.clone(),
            created: Instant::now(),
            created_unix_ms: unix_ms_now(),
            // Only the session's relay reads the ingress (each segment it relays is held by its
            // task): the window need not keep more than the segment being written and the one
            // before.
            ingress: features
                .ingress
                .then(|| Channel::new(window::Limits { window: settings.channel.window.min(2), ..settings.channel })),
            egress: features.egress.then(|| Channel::new(settings.channel)),
            data: features.data.then(|| DataFeed::new(settings.data_buffer_lines, settings.max_line_bytes)),
            status: Mutex::default(),
            counters: Counters::default(),
            activity: Mutex::default(),
            snapshot: Mutex::new(snapshot),
            params: Mutex::new(None),
            rtmp_outputs: start.rtmp_outputs.clone(),
            edges: Mutex::default(),
            commands,
            ended: watch::channel(false).0,
        });
        self.reserve(&stream)?;
        let body = request::start_body(start.params.as_ref());
        let mut client = spec.client;
        client.id = start.stream_id.clone();
        let sig = router.signer.sign_job(&client.request, &client.parameters);
        let header = encode_job_request(&client, router.signer.address(), &sig);
        let job = Job {
            client,
            path: upstream::START.to_string(),
            body: crate::protocol::body::JobBody::from(body.clone()),
            content_type: Some("application/json".into()),
            request_id: spec.request_id,
            via: router.marker.upstream(&awc::http::header::HeaderMap::new()),
            client_addr: None,
        };
        let spec = place::Spec { job, header, body, max_attempts: settings.start_attempts };
        let (started_tx, started) = oneshot::channel();
        let ctx = task::Ctx { router: router.clone(), streams: self.clone(), settings: settings.clone() };
        actix::spawn(task::run(ctx, stream, spec, rx, started_tx));
        match started.await {
            Ok(Ok(())) => Ok(urls),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StreamError::Unavailable),
        }
    }

    /// Takes the stream's id and a place under the limit.
    fn reserve(&self, stream: &Arc<Stream>) -> Result<(), StreamError> {
        let mut live = self.inner.live.lock();
        if live.contains_key(&stream.id) {
            return Err(StreamError::Duplicate(stream.id.clone()));
        }
        if live.len() >= self.inner.settings.max_streams {
            let unknown = crate::metrics::CapabilityLabel::UNKNOWN.value();
            metrics::counter!(crate::metrics::STREAM_STARTS_TOTAL, "capability" => unknown, "outcome" => "stream-limit").increment(1);
            return Err(StreamError::Limit(self.inner.settings.max_streams));
        }
        live.insert(stream.id.clone(), stream.clone());
        drop(live);
        // An ended stream of the same id is replaced.
        self.inner.ended.lock().retain(|s| s.id != stream.id);
        Ok(())
    }

    /// A stream whose start failed leaves no trace (its id can be used again at once).
    pub(crate) fn forget(&self, id: &str) {
        self.inner.live.lock().remove(id);
    }

    /// A stream that ended moves to the ended list (bounded).
    pub(crate) fn retire(&self, stream: &Arc<Stream>) {
        self.inner.live.lock().remove(&stream.id);
        let mut ended = self.inner.ended.lock();
        ended.push_back(stream.clone());
        while ended.len() > self.inner.settings.ended_kept {
            ended.pop_front();
        }
    }

    /// A stream, live or among the last ended.
    pub fn get(&self, id: &str) -> Option<Arc<Stream>> {
        if let Some(s) = self.inner.live.lock().get(id) {
            return Some(s.clone());
        }
        self.inner.ended.lock().iter().rev().find(|s| s.id == id).cloned()
    }

    /// A live stream: `NotFound` or `Ended` (with why) otherwise.
    pub(crate) fn live(&self, id: &str) -> Result<Arc<Stream>, StreamError> {
        match self.get(id) {
            None => Err(StreamError::NotFound(id.to_string())),
            Some(s) => match s.end_reason() {
                Some(r) => Err(StreamError::Ended { id: id.to_string(), reason: r.describe() }),
                None => Ok(s),
            },
        }
    }

    /// Forwards new params to the stream's orchestrator (and keeps them for the next one). The
    /// update's header must name the stream's capability.
    pub async fn update(
        &self,
        id: &str,
        client: &ClientJob,
        body: Bytes,
        content_type: Option<String>,
    ) -> Result<UpdateAnswer, StreamError> {
        let s = self.live(id)?;
        if client.capability != s.capability {
            return Err(StreamError::CapabilityMismatch {
                stream: s.capability.to_string(),
                update: client.capability.to_string(),
            });
        }
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Update { body, content_type, timeout_seconds: client.timeout_seconds, reply };
        send(&s, cmd).await?;
        match tokio::time::timeout(Duration::from_secs(client.timeout_seconds) + COMMAND_WAIT, answer).await {
            Ok(Ok(r)) => r,
            _ => Err(StreamError::Unavailable),
        }
    }

    /// Stops a stream: its orchestrator is told (with `body`), its channels close. Returns the
    /// orchestrator's answer.
    pub async fn stop(&self, id: &str, by: Stopper, body: Bytes) -> Result<StopAnswer, StreamError> {
        let s = self.live(id)?;
        let (reply, answer) = oneshot::channel();
        send(&s, Command::Stop { by, body, reply: Some(reply) }).await?;
        // The task tells the orchestrator (bounded: 10 s) before answering.
        match tokio::time::timeout(Duration::from_secs(15), answer).await {
            Ok(Ok(a)) => Ok(a),
            _ => Err(StreamError::Unavailable),
        }
    }

    /// The status document of a stream (also of an ended one, with why it ended).
    pub fn status(&self, id: &str) -> Result<serde_json::Value, StreamError> {
        let s = self.get(id).ok_or_else(|| StreamError::NotFound(id.to_string()))?;
        let report = report::report(&s);
        let gateway = serde_json::to_value(&report).unwrap_or_default();
        let orchestrator = report.orchestrator.as_ref().map(|o| o.url.clone()).unwrap_or_default();
        let doc = s.status.lock().view(gateway, &orchestrator, &s.id);
        Ok(doc)
    }

    /// The SSE body of `/data`: one `data:` event per line, an `end` event when the stream ends,
    /// a comment every 15 s meanwhile.
    pub fn data(&self, id: &str) -> Result<DataEvents, StreamError> {
        let s = self.get(id).ok_or_else(|| StreamError::NotFound(id.to_string()))?;
        let feed = s.data.as_ref().ok_or(StreamError::NoData)?;
        let rx = feed.subscribe();
        Ok(Box::pin(data::sse(s.clone(), rx)))
    }

    /// The stream's ingress channel (for the media endpoint writing it).
    pub fn ingress(&self, id: &str) -> Result<Arc<Channel>, StreamError> {
        let s = self.get(id).ok_or_else(|| StreamError::NotFound(id.to_string()))?;
        s.ingress.clone().ok_or(StreamError::NoMedia("enable_video_ingress"))
    }

    /// The stream's egress channel (for the media endpoint reading it).
    pub fn egress(&self, id: &str) -> Result<Arc<Channel>, StreamError> {
        let s = self.get(id).ok_or_else(|| StreamError::NotFound(id.to_string()))?;
        s.egress.clone().ok_or(StreamError::NoMedia("enable_video_egress"))
    }

    /// Every stream (live first, then the ended ones, newest first).
    pub fn list(&self) -> Vec<StreamReport> {
        let live: Vec<Arc<Stream>> = self.inner.live.lock().values().cloned().collect();
        let ended: Vec<Arc<Stream>> = self.inner.ended.lock().iter().rev().cloned().collect();
        let mut out: Vec<StreamReport> = live.iter().map(|s| report::report(s)).collect();
        out.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        out.extend(ended.iter().map(|s| report::report(s)));
        out
    }

    /// One stream's report.
    pub fn report(&self, id: &str) -> Option<StreamReport> {
        self.get(id).map(|s| report::report(&s))
    }

    /// Stops every live stream (each orchestrator is told) and waits for them, at most `wait`.
    /// New starts are refused from now on.
    pub async fn shutdown(&self, wait: Duration) -> usize {
        self.inner.closing.store(true, Ordering::Release);
        let live: Vec<Arc<Stream>> = self.inner.live.lock().values().cloned().collect();
        let n = live.len();
        let waits = live.into_iter().map(|s| async move {
            let mut ended = s.ended.subscribe();
            let _ = s
                .commands
                .send(Command::Stop {
                    by: Stopper::Shutdown,
                    body: Bytes::from_static(b"gateway shutting down"),
                    reply: None,
                })
                .await;
            let _ = ended.wait_for(|e| *e).await;
        });
        if tokio::time::timeout(wait, futures_util::future::join_all(waits)).await.is_err() {
            tracing::warn!("some streams did not end within the shutdown wait");
        }
        n
    }
}

/// Hands a command to a stream's task, bounded.
async fn send(s: &Stream, cmd: Command) -> Result<(), StreamError> {
    match tokio::time::timeout(COMMAND_WAIT, s.commands.send(cmd)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(StreamError::Unavailable),
    }
}
