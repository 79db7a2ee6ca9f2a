//! `Supervisor`: owns the registry of orchestrators and capabilities and the address of every
//! pair actor. It starts pair actors under actix supervision (so a pair that stops is
//! restarted with its learned state), hot-adds and removes orchestrators, creates pairs
//! lazily the first time a capability is asked for, keeps the scoreboard's boards in step,
//! and persists pair scores in batches.
//!
//! The invariant it maintains: for every *registered* capability (declared in config or for
//! an orchestrator, or offered by some orchestrator at some time), a pair exists, on the
//! scoreboard, for every orchestrator that declares it or has been seen to offer it.
//! Whether the other orchestrators offer it is found out by surveys (`supervisor/survey.rs`),
//! whose pairs stay off the board until their first token says so.
//!
//! Orchestrators come from three sources ([`Source`]): flags and the config file (reconciled
//! at start and on reload), the admin API, and the discovery webhook (reconciled after every
//! successful fetch, see [`crate::discovery`] and `supervisor/webhook.rs`). Each source only
//! ever removes its own entries.

mod changes;
mod client_errors;
mod discovered;
mod history;
mod pair_metrics;
mod pairs;
mod persistence;
mod policies;
mod registry;
mod report;
mod survey;
mod webhook;

pub use discovered::{DiscoveredReport, ForgetCapability, ForgottenCapability};
pub use history::GetHistory;
pub use pair_metrics::RenderPairMetrics;
#[cfg(any(test, feature = "fault-injection"))]
pub use pairs::CrashPair;
use pairs::Registration;
pub use pairs::{Availability, EnsureCapability, ForcePairBreaker, NodeUnreachable};
pub use persistence::{ExportStore, FlushScores};
pub use policies::{CapabilityReport, DeleteCapabilityPolicy, GetCapability, ListCapabilities, SetCapabilityPolicy};
pub use registry::{AddOrchestrator, ChangeOrchestrator, ListOrchestrators, Reload, ReloadReport, RemoveOrchestrator};
pub use report::{
    GetSupervisorReport, ListPairs, ListPairsPage, MailboxPressure, PairsPage, RestartedPair, SupervisorReport,
    SurveyReport,
};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use serde::Serialize;

use crate::capability::{Capability, CapabilityError};
use crate::discovery::DiscoveryReport;
use crate::history::{History, HistorySettings};
use crate::metrics as m;
use crate::orchestrator::{
    normalize_url, Label, LabelError, Listed, Orchestrator, OrchestratorChange, OrchestratorId, Source, UrlError,
};
use crate::pair::view::OrchestratorRef;
#[cfg(any(test, feature = "fault-injection"))]
use crate::pair::Crash;
use crate::pair::{
    ForceBreaker, GetView, PairActor, PairKey, PairRecord, PairReport, PairSettings, PeerUnreachable, Reason, Retire,
    SetPolicy, Settle, SharedView, Tally,
};
use crate::pair::{SetEnabled, SetLabel};
use crate::policy::{CapabilityPolicy, Effective, PolicyBook};
use crate::protocol::client::{build_client, ClientBuildError, ClientSettings};
use crate::queue::QueueReport;
use crate::ratelimit::RateLimit;
use crate::registry::{Forced, Outcome, Registry, RegistryStatus, WriteError};
use crate::scoreboard::{BoardEntry, Scoreboard};
use crate::store::{self, ExportedPolicy, SavePairs, Size, Store, StoreError, StoreExport};

/// How long "nobody offers capability X" is remembered, so that clients asking for an
/// unserved capability get a fast 404 instead of a probe fan-out each time.
const NOT_OFFERED_TTL: Duration = Duration::from_secs(5);
/// Bound on waiting for pairs to apply their pending fast-path answers before a read.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on that memory (each entry is a client-chosen name).
const NOT_OFFERED_MAX: usize = 10_000;
/// Bound on a store round trip from the supervisor.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// A registry failure; each maps to an admin API status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The URL is not usable.
    #[error(transparent)]
    InvalidUrl(#[from] UrlError),
    /// A declared capability name is not valid.
    #[error("invalid capability '{0}': {1}")]
    InvalidCapability(String, CapabilityError),
    /// The operator's label is not valid.
    #[error(transparent)]
    InvalidLabel(#[from] LabelError),
    /// More declared capabilities than one orchestrator may have.
    #[error("{0} capabilities listed; at most {max} may be declared for one orchestrator (others are discovered as jobs ask for them)", max = crate::orchestrator::MAX_DECLARED_CAPABILITIES)]
    TooManyCapabilities(usize),
    /// The URL is already registered.
    #[error("{url} is already registered as {id}")]
    Duplicate {
        /// Existing id.
        id: OrchestratorId,
        /// The URL.
        url: String,
    },
    /// No such orchestrator.
    #[error("no orchestrator with id '{0}'")]
    NotFound(String),
    /// No such pair.
    #[error("no pair for orchestrator '{0}' and capability '{1}'")]
    PairNotFound(String, String),
    /// No such capability (none registered, no policy).
    #[error("no capability named '{0}' is registered")]
    CapabilityNotFound(String),
    /// The capability cannot be forgotten: the config file or orchestrators declare it (it
    /// would come back at once).
    #[error("capability '{name}' is declared {}: remove it there first", declared_where(.by))]
    CapabilityDeclared {
        /// The capability.
        name: String,
        /// The orchestrators that declare it (empty: the config file's `[capabilities]`).
        by: Vec<String>,
    },
    /// The capability has no runtime policy to delete.
    #[error(
        "capability '{0}' has no runtime policy to delete (its policy comes from the config file or the defaults)"
    )]
    NoRuntimePolicy(String),
    /// The store failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A capability policy is not valid.
    #[error("invalid policy for '{0}': {1}")]
    InvalidPolicy(String, String),
    /// An actor did not answer in time.
    #[error("the {0} did not answer in time")]
    Unavailable(&'static str),
    /// The shared registry (etcd) could not take the write; `outcome` says whether it may
    /// still commit.
    #[error("{detail}")]
    RegistryUnavailable {
        /// Not applied, or unknown.
        outcome: Outcome,
        /// What happened.
        detail: String,
    },
}

impl From<WriteError> for RegistryError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Store(e) => RegistryError::Store(e),
            WriteError::StoreTimeout => RegistryError::Unavailable("store"),
            WriteError::Unavailable { outcome, detail } => RegistryError::RegistryUnavailable { outcome, detail },
        }
    }
}

fn declared_where(by: &[String]) -> String {
    match by {
        [] => "in the config file's [capabilities]".to_string(),
        [one] => format!("by orchestrator {one}"),
        many => format!("by {} orchestrators ({}, ...)", many.len(), many[0]),
    }
}

/// Flattens a store round trip: a store error or a mailbox failure becomes the registry error
/// the admin API maps (503).
fn stored<T>(res: Result<Result<T, StoreError>, MailboxError>) -> Result<T, RegistryError> {
    match res {
        Ok(r) => r.map_err(RegistryError::Store),
        Err(_) => Err(RegistryError::Unavailable("store")),
    }
}

struct PairEntry {
    addr: Addr<PairActor>,
    view: SharedView,
    tally: Arc<Tally>,
    /// The view generation last written to the store (`None`: never written).
    saved: Option<u64>,
    /// On the scoreboard (a survey's or a name probe's pair is not, until it offers).
    on_board: bool,
}

/// Everything the supervisor starts from.
pub struct SupervisorInit {
    /// Settings shared by all pair actors.
    pub settings: Arc<PairSettings>,
    /// How the pairs' upstream client (token probes) is built.
    pub client: ClientSettings,
    /// The store (pair scores; with sled, the registry too).
    pub store: Addr<Store>,
    /// Where registry writes go (sled or etcd).
    pub registry: Arc<dyn Registry>,
    /// How fresh the registry copy is (etcd), shared with the admin API.
    pub status: RegistryStatus,
    /// Forced breaker states shared by the fleet, as loaded (etcd; empty with sled).
    pub forced: BTreeMap<PairKey, Forced>,
    /// The boards jobs select from, kept in step with the registry.
    pub scoreboard: Scoreboard,
    /// The registry and learned scores as loaded.
    pub snapshot: store::Snapshot,
    /// Capabilities named in the config: pairs are created for them at start.
    pub eager: Vec<Capability>,
    /// How long the first request for a new capability waits for the token probes.
    pub probe_wait: Duration,
    /// Token probes a second spent on capability names nobody is known to offer.
    pub discovery_probes_per_sec: u32,
    /// Capabilities lazy discovery registers at most (`routing.max_discovered_capabilities`).
    pub max_discovered_capabilities: usize,
    /// How often dirty pair scores are written.
    pub flush_every: Duration,
    /// Capability policies (shared with the routers).
    pub policies: PolicyBook,
    /// The config file's own policies (what a deleted runtime policy falls back to).
    pub config_policies: HashMap<Capability, CapabilityPolicy>,
    /// Discovery as configured ([`DiscoveryReport::default`] when no webhook is set).
    pub discovery: DiscoveryReport,
    /// The status page's history: how often to sample, how far back, how many pairs.
    pub history: HistorySettings,
}

/// The actor.
pub struct Supervisor {
    settings: Arc<PairSettings>,
    client: awc::Client,
    store: Addr<Store>,
    registry: Arc<dyn Registry>,
    status: RegistryStatus,
    /// Forced breaker states of the registry (etcd: shared; applied to pairs as they start).
    fleet_forced: BTreeMap<PairKey, Forced>,
    /// Writers waiting for their commit's revision to be applied by the watch.
    waiters: BTreeMap<i64, Vec<tokio::sync::oneshot::Sender<()>>>,
    /// The registry changed since the local copy was last written (etcd).
    mirror_dirty: bool,
    scoreboard: Scoreboard,
    policies: PolicyBook,
    config_policies: HashMap<Capability, CapabilityPolicy>,
    orchestrators: BTreeMap<OrchestratorId, Orchestrator>,
    /// Each orchestrator as its pairs' views show it (URL, label), shared by its pairs.
    orchestrator_refs: HashMap<OrchestratorId, Arc<OrchestratorRef>>,
    pairs: BTreeMap<PairKey, PairEntry>,
    registered: BTreeSet<Capability>,
    /// Registered by lazy discovery (nothing declares them), at most `max_discovered`.
    discovered: BTreeSet<Capability>,
    /// Of those, the ones none of whose pairs has answered a job: their records are not saved.
    unproven: BTreeSet<Capability>,
    max_discovered: usize,
    /// Jobs refused because lazy discovery was full.
    discovery_refused: u64,
    not_offered: HashMap<Capability, Instant>,
    warm: HashMap<PairKey, PairRecord>,
    /// Pairs started off the board (surveys, name probes), with when they started.
    off_board: BTreeMap<PairKey, Instant>,
    /// Which orchestrators to ask about which capabilities next.
    survey: survey::Survey,
    probe_wait: Duration,
    /// Probes spent discovering capability names nobody is known to offer.
    name_probes: RateLimit,
    name_probe_rate: f64,
    flush_every: Duration,
    last_flush: Instant,
    flushing: bool,
    /// Capabilities whose policy was set through the admin API (they win over the file's).
    runtime_policies: BTreeSet<Capability>,
    /// When the last tick ran, to measure how late the next one is (mailbox pressure).
    last_tick: Instant,
    /// When the supervisor started.
    started_at: Instant,
    /// How late the last tick ran, in milliseconds.
    tick_lag_ms: u64,
    /// Last measured store round trip, in microseconds.
    store_rtt_us: Option<u64>,
    ticks: u64,
    /// When a batch of scores was last written (Unix ms).
    scores_saved_at: Option<u64>,
    /// What the discovery webhook last did.
    discovery: DiscoveryReport,
    /// The status page's recent past.
    history: History,
    /// When the last history sample was taken.
    last_sample: Instant,
}

impl Supervisor {
    /// Builds the supervisor; must run on the arbiter it will be started on (it builds an
    /// `awc::Client`, which is bound to its thread).
    pub fn new(init: SupervisorInit) -> Result<Self, ClientBuildError> {
        let client = build_client(&init.client)?;
        let mut registered: BTreeSet<Capability> = init.eager.iter().cloned().collect();
        registered.extend(init.snapshot.orchestrators.iter().flat_map(|o| o.capabilities.iter().cloned()));
        // Stored pairs bring back what they offered, if it is anchored or served a job.
        let anchored = registered.clone();
        let discovered = discovered::from_records(&init.snapshot.pairs, |c| anchored.contains(c), &mut registered);
        Ok(Self {
            settings: init.settings,
            client,
            store: init.store,
            registry: init.registry,
            status: init.status,
            fleet_forced: init.forced,
            waiters: BTreeMap::new(),
            mirror_dirty: false,
            scoreboard: init.scoreboard,
            policies: init.policies,
            config_policies: init.config_policies,
            orchestrators: init.snapshot.orchestrators.into_iter().map(|o| (o.id.clone(), o)).collect(),
            orchestrator_refs: HashMap::new(),
            pairs: BTreeMap::new(),
            registered,
            discovered,
            unproven: BTreeSet::new(),
            max_discovered: init.max_discovered_capabilities,
            discovery_refused: 0,
            not_offered: HashMap::new(),
            runtime_policies: init.snapshot.policies.iter().map(|(c, _)| c.clone()).collect(),
            warm: init.snapshot.pairs.into_iter().map(|r| (r.key(), r)).collect(),
            off_board: BTreeMap::new(),
            survey: survey::Survey::new(),
            probe_wait: init.probe_wait,
            name_probes: RateLimit::new(f64::from(init.discovery_probes_per_sec)),
            name_probe_rate: f64::from(init.discovery_probes_per_sec),
            flush_every: init.flush_every,
            last_flush: Instant::now(),
            flushing: false,
            last_tick: Instant::now(),
            started_at: Instant::now(),
            tick_lag_ms: 0,
            store_rtt_us: None,
            ticks: 0,
            scores_saved_at: None,
            discovery: init.discovery,
            history: History::new(init.history),
            last_sample: Instant::now(),
        })
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.measure_mailbox(now, ctx);
        self.publish_gauges(now);
        self.judge_client_errors();
        self.not_offered.retain(|_, until| *until > now);
        self.decide_off_board();
        self.survey_step(ctx);
        self.flush_if_due(now, ctx);
        self.mirror_if_dirty();
        self.status.tick();
    }

    /// Mailbox pressure: how late this tick runs (and, every 10 ticks, how long the store
    /// takes to answer a message behind whatever is queued, with the store's size).
    fn measure_mailbox(&mut self, now: Instant, ctx: &mut Context<Self>) {
        self.tick_lag_ms =
            now.saturating_duration_since(self.last_tick).saturating_sub(Duration::from_secs(1)).as_millis() as u64;
        self.last_tick = now;
        self.ticks += 1;
        if self.ticks % 10 == 1 {
            let sent = Instant::now();
            ctx.spawn(self.store.send(Size).timeout(Duration::from_secs(5)).into_actor(self).map(
                move |res, act, _ctx| {
                    act.store_rtt_us = res.as_ref().ok().map(|_| sent.elapsed().as_micros() as u64);
                    if let Ok(Ok(bytes)) = res {
                        metrics::gauge!(m::STORE_SIZE_BYTES).set(bytes as f64);
                    }
                },
            ));
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        // Every reason and state at zero before the first tick (dashboards show 0, not "no data").
        for reason in Reason::ALL {
            metrics::gauge!(m::PAIRS_UNROUTABLE, "reason" => reason.as_str()).increment(0.0);
        }
        for state in ["closed", "open", "half_open"] {
            metrics::gauge!(m::PAIRS, "state" => state).increment(0.0);
        }
        self.ensure_declared_pairs();
        // Pairs seen offering before the restart come back on the board with what they learned.
        let offered: Vec<PairKey> = self
            .warm
            .values()
            .filter(|r| r.offered && self.registered.contains(&r.capability))
            .filter(|r| self.orchestrators.contains_key(&r.orchestrator))
            .map(PairRecord::key)
            .collect();
        for key in offered {
            self.spawn_pair(key, true);
        }
        // The rest never offered anything: the survey asks again, and the store forgets them
        // (a store from before surveys held one per orchestrator per capability).
        let stale: Vec<PairKey> = self.warm.drain().map(|(k, _)| k).collect();
        self.warm.shrink_to_fit();
        if !stale.is_empty() {
            tracing::info!(records = stale.len(), "pair records that never offered anything forgotten");
            self.store.do_send(store::ForgetPairs { keys: stale });
        }
        self.survey_step(ctx);
        tracing::info!(
            orchestrators = self.orchestrators.len(),
            capabilities = self.registered.len(),
            pairs = self.pairs.len(),
            "supervisor started"
        );
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.tick(ctx));
        ctx.run_interval(self.history.settings().period, |act, _ctx| act.sample_history());
    }
}
