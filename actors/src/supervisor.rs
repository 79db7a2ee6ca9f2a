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

mod survey;
mod webhook;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use serde::Serialize;

use crate::capability::{Capability, CapabilityError};
use crate::discovery::DiscoveryReport;
use crate::metrics as m;
use crate::orchestrator::{normalize_url, Orchestrator, OrchestratorId, Source, UrlError};
#[cfg(any(test, feature = "fault-injection"))]
use crate::pair::Crash;
use crate::pair::SetEnabled;
use crate::pair::{
    ForceBreaker, PairActor, PairKey, PairRecord, PairReport, PairSettings, PeerUnreachable, Retire, SetPolicy, Settle,
    SharedView, Snapshot, Tally, Unroutable,
};
use crate::policy::{CapabilityPolicy, Effective, PolicyBook};
use crate::protocol::client::{build_client, ClientBuildError, ClientSettings};
use crate::queue::QueueReport;
use crate::ratelimit::RateLimit;
use crate::scoreboard::{Scoreboard, Slot};
use crate::store::{
    self, DeleteOrchestrator, DeletePolicy, ExportedPolicy, InsertOrchestrator, PutPolicy, ReconcileConfig, SavePairs,
    SetOrchestratorEnabled, Size, Store, StoreError, StoreExport,
};

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
    /// The store failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A capability policy is not valid.
    #[error("invalid policy for '{0}': {1}")]
    InvalidPolicy(String, String),
    /// An actor did not answer in time.
    #[error("the {0} did not answer in time")]
    Unavailable(&'static str),
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
    /// The store.
    pub store: Addr<Store>,
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
    /// How often dirty pair scores are written.
    pub flush_every: Duration,
    /// Capability policies (shared with the routers).
    pub policies: PolicyBook,
    /// The config file's own policies (what a deleted runtime policy falls back to).
    pub config_policies: HashMap<Capability, CapabilityPolicy>,
    /// Discovery as configured ([`DiscoveryReport::default`] when no webhook is set).
    pub discovery: DiscoveryReport,
}

/// The actor.
pub struct Supervisor {
    settings: Arc<PairSettings>,
    client: awc::Client,
    store: Addr<Store>,
    scoreboard: Scoreboard,
    policies: PolicyBook,
    config_policies: HashMap<Capability, CapabilityPolicy>,
    orchestrators: BTreeMap<OrchestratorId, Orchestrator>,
    pairs: BTreeMap<PairKey, PairEntry>,
    registered: BTreeSet<Capability>,
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
    /// How late the last tick ran, in milliseconds.
    tick_lag_ms: u64,
    /// Last measured store round trip, in microseconds.
    store_rtt_us: Option<u64>,
    ticks: u64,
    /// When a batch of scores was last written (Unix ms).
    scores_saved_at: Option<u64>,
    /// What the discovery webhook last did.
    discovery: DiscoveryReport,
}

impl Supervisor {
    /// Builds the supervisor; must run on the arbiter it will be started on (it builds an
    /// `awc::Client`, which is bound to its thread).
    pub fn new(init: SupervisorInit) -> Result<Self, ClientBuildError> {
        let client = build_client(&init.client)?;
        let mut registered: BTreeSet<Capability> = init.eager.iter().cloned().collect();
        registered.extend(init.snapshot.orchestrators.iter().flat_map(|o| o.capabilities.iter().cloned()));
        registered.extend(init.snapshot.pairs.iter().filter(|r| r.offered).map(|r| r.capability.clone()));
        Ok(Self {
            settings: init.settings,
            client,
            store: init.store,
            scoreboard: init.scoreboard,
            policies: init.policies,
            config_policies: init.config_policies,
            orchestrators: init.snapshot.orchestrators.into_iter().map(|o| (o.id.clone(), o)).collect(),
            pairs: BTreeMap::new(),
            registered,
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
            tick_lag_ms: 0,
            store_rtt_us: None,
            ticks: 0,
            scores_saved_at: None,
            discovery: init.discovery,
        })
    }

    /// Starts a pair actor under actix supervision. `register` puts it on the board.
    fn spawn_pair(&mut self, key: PairKey, register: bool) {
        if self.pairs.contains_key(&key) {
            return;
        }
        let Some(orch) = self.orchestrators.get(&key.orchestrator) else {
            return;
        };
        let declared = orch.capabilities.contains(&key.capability);
        let record = self.warm.remove(&key);
        let actor = PairActor::new(
            self.settings.clone(),
            self.policies.effective(&key.capability),
            self.client.clone(),
            key.clone(),
            Arc::from(orch.url.as_str()),
            record.as_ref(),
            declared,
        )
        .with_enabled(orch.enabled);
        let view = actor.view();
        let tally = actor.tally();
        // Just loaded from disk: not dirty until it changes.
        let saved = record.is_some().then(|| view.read().generation);
        let addr = actix::Supervisor::start(move |_ctx| actor);
        self.pairs.insert(key.clone(), PairEntry { addr, view, tally, saved, on_board: false });
        if register {
            self.put_on_board(&key);
        } else {
            self.off_board.insert(key, Instant::now());
        }
    }

    /// Puts an existing pair on the scoreboard.
    fn put_on_board(&mut self, key: &PairKey) {
        self.off_board.remove(key);
        let Some(entry) = self.pairs.get_mut(key) else { return };
        if !entry.on_board {
            entry.on_board = true;
            self.scoreboard.register(Slot {
                key: key.clone(),
                addr: entry.addr.clone(),
                view: entry.view.clone(),
                tally: entry.tally.clone(),
            });
        }
    }

    /// Makes sure every orchestrator has a pair on the board for each capability it declares
    /// (declared capabilities are registered).
    fn ensure_declared_pairs(&mut self) {
        let keys: Vec<PairKey> = self
            .orchestrators
            .values()
            .flat_map(|o| o.capabilities.iter().map(|c| PairKey { orchestrator: o.id.clone(), capability: c.clone() }))
            .filter(|k| self.registered.contains(&k.capability))
            .collect();
        for key in keys {
            if self.pairs.contains_key(&key) {
                self.put_on_board(&key);
            } else {
                self.spawn_pair(key, true);
            }
        }
    }

    /// Registers a capability: its pairs that have offered it go on the board and, with
    /// `survey`, every orchestrator is asked whether it offers it.
    fn register_capability(&mut self, cap: &Capability, survey: bool) {
        if self.registered.insert(cap.clone()) {
            tracing::info!(capability = %cap, "capability registered");
            let keys: Vec<PairKey> = self.off_board.keys().filter(|k| &k.capability == cap).cloned().collect();
            for key in &keys {
                self.decide(key);
            }
            if survey {
                self.survey.capability_registered(cap.clone());
            }
        }
    }

    /// A newly registered orchestrator: pairs for what it declares, a survey for the rest.
    fn orchestrator_added(&mut self, orch: &Orchestrator) {
        for cap in &orch.capabilities {
            self.register_capability(cap, true);
        }
        self.survey.orchestrator_added(orch.id.clone());
        self.ensure_declared_pairs();
    }

    /// Hands a capability's new effective policy to each of its pairs (control plane: one
    /// message per pair of one capability).
    fn push_policy(&self, cap: &Capability, effective: &Arc<Effective>) {
        for (key, entry) in &self.pairs {
            if &key.capability == cap {
                entry.addr.do_send(SetPolicy(effective.clone()));
            }
        }
    }

    fn remove_pair(&mut self, key: &PairKey) {
        self.off_board.remove(key);
        if let Some(entry) = self.pairs.remove(key) {
            if entry.on_board {
                self.scoreboard.unregister(key);
            }
            entry.addr.do_send(Retire);
        }
    }

    /// Waits until every pair with fast-path answers awaiting accounting has applied them
    /// (bounded by [`SETTLE_TIMEOUT`]), so that what is read next includes every answered job.
    /// Only pairs with pending samples get a message.
    fn settle(&self) -> impl std::future::Future<Output = ()> + 'static {
        let pending: Vec<_> = self
            .pairs
            .values()
            .filter(|e| e.tally.is_pending())
            .map(|e| e.addr.send(Settle).timeout(SETTLE_TIMEOUT))
            .collect();
        async move {
            futures_util::future::join_all(pending).await;
        }
    }

    /// Retires every pair of an orchestrator that has left the registry (they leave the boards
    /// at once; in-flight jobs finish). Returns how many there were.
    fn remove_orchestrator_pairs(&mut self, id: &OrchestratorId) -> usize {
        let keys: Vec<PairKey> = self.pairs.keys().filter(|k| &k.orchestrator == id).cloned().collect();
        for key in &keys {
            self.remove_pair(key);
        }
        keys.len()
    }

    /// Records of pairs whose view changed since last saved, with the generation read, so
    /// that a change made while the write is under way keeps the pair dirty. Only pairs on
    /// the board are saved: a survey's or a name probe's pair that offered nothing would
    /// otherwise grow the store.
    fn dirty_records(&self) -> (Vec<PairRecord>, Vec<(PairKey, u64)>) {
        let now = Instant::now();
        self.pairs
            .iter()
            .filter(|(_, entry)| entry.on_board)
            .filter_map(|(key, entry)| {
                let v = entry.view.read();
                (entry.saved != Some(v.generation) && !v.retired).then(|| (v.record(now), (key.clone(), v.generation)))
            })
            .unzip()
    }

    fn mark_saved(&mut self, generations: Vec<(PairKey, u64)>) {
        self.scores_saved_at = Some(crate::clock::unix_ms_now());
        for (key, generation) in generations {
            if let Some(entry) = self.pairs.get_mut(&key) {
                entry.saved = Some(generation);
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        // Mailbox pressure: how late this tick runs (and, every 10 ticks, how long the store
        // takes to answer a message behind whatever is queued).
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
        let (mut closed, mut open, mut half, mut routable) = (0u32, 0u32, 0u32, 0u32);
        for entry in self.pairs.values() {
            let v = entry.view.read();
            match v.breaker {
                crate::breaker::State::Closed => closed += 1,
                crate::breaker::State::Open => open += 1,
                crate::breaker::State::HalfOpen => half += 1,
            }
            if v.routable_at(now).is_ok() {
                routable += 1;
            }
        }
        metrics::gauge!(m::PAIRS, "state" => "closed").set(closed);
        metrics::gauge!(m::PAIRS, "state" => "open").set(open);
        metrics::gauge!(m::PAIRS, "state" => "half_open").set(half);
        metrics::gauge!(m::PAIRS_ROUTABLE).set(routable);
        metrics::gauge!(m::ORCHESTRATORS).set(self.orchestrators.len() as f64);
        let mut unroutable: BTreeMap<&'static str, u32> = Unroutable::NAMES.into_iter().map(|r| (r, 0)).collect();
        // Slots per capability: the limits of its routable pairs, and its jobs in flight.
        let mut slots: BTreeMap<&Capability, (u64, u64)> = BTreeMap::new();
        for (key, entry) in &self.pairs {
            let v = entry.view.read();
            let s = slots.entry(&key.capability).or_default();
            s.1 += u64::from(v.inflight());
            match v.routable_at(now) {
                Ok(()) => s.0 += u64::from(v.slots.limit()),
                Err(reason) => *unroutable.entry(reason.as_str()).or_default() += 1,
            }
        }
        for (reason, n) in unroutable {
            metrics::gauge!(m::PAIRS_UNROUTABLE, "reason" => reason).set(n);
        }
        for (cap, (limit, inflight)) in slots.into_iter().filter(|(c, _)| self.registered.contains(*c)) {
            metrics::gauge!(m::SLOTS, "capability" => cap.to_string()).set(limit as f64);
            metrics::gauge!(m::SLOTS_INFLIGHT, "capability" => cap.to_string()).set(inflight as f64);
        }
        self.not_offered.retain(|_, until| *until > now);
        self.decide_off_board();
        self.survey_step(ctx);

        if !self.flushing && now.duration_since(self.last_flush) >= self.flush_every {
            self.last_flush = now;
            let (records, generations) = self.dirty_records();
            if records.is_empty() {
                return;
            }
            self.flushing = true;
            let fut = self.store.send(SavePairs { records }).timeout(STORE_TIMEOUT);
            ctx.spawn(fut.into_actor(self).map(move |res, act, _ctx| {
                act.flushing = false;
                match res {
                    Ok(Ok(n)) => {
                        tracing::debug!(pairs = n, "pair scores saved");
                        act.mark_saved(generations);
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "saving pair scores failed; will retry"),
                    Err(e) => tracing::warn!(error = %e, "store did not answer; pair scores will be retried"),
                }
            }));
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
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
    }
}

/// Registers an orchestrator (durably) and starts its pairs.
#[derive(Message)]
#[rtype(result = "Result<Orchestrator, RegistryError>")]
pub struct AddOrchestrator {
    /// URL or `host:port` (normalised as go-livepeer's `-orchAddr`).
    pub url: String,
    /// Declared capabilities (optional).
    pub capabilities: Vec<String>,
    /// Where the request came from.
    pub source: Source,
}

impl Handler<AddOrchestrator> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Orchestrator, RegistryError>>;

    fn handle(&mut self, msg: AddOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        let prepared = (|| {
            let url = normalize_url(&msg.url)?;
            let mut caps = Vec::new();
            for c in &msg.capabilities {
                let cap = Capability::new(c).map_err(|e| RegistryError::InvalidCapability(c.clone(), e))?;
                if !caps.contains(&cap) {
                    caps.push(cap);
                }
            }
            Ok::<_, RegistryError>((url, caps))
        })();
        let (url, capabilities) = match prepared {
            Ok(v) => v,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let fut = self.store.send(InsertOrchestrator { url, capabilities, source: msg.source }).timeout(STORE_TIMEOUT);
        Box::pin(fut.into_actor(self).map(|res, act, ctx| {
            let orch = stored(res)?.map_err(|dup| RegistryError::Duplicate { id: dup.id, url: dup.url })?;
            tracing::info!(id = %orch.id, url = %orch.url, capabilities = ?orch.capabilities, "orchestrator added");
            act.orchestrators.insert(orch.id.clone(), orch.clone());
            act.not_offered.clear();
            act.orchestrator_added(&orch);
            act.survey_step(ctx);
            Ok(orch)
        }))
    }
}

/// Removes an orchestrator (durably); its pairs leave the boards at once and retire once
/// their in-flight jobs finish.
#[derive(Message)]
#[rtype(result = "Result<Orchestrator, RegistryError>")]
pub struct RemoveOrchestrator {
    /// Which one.
    pub id: String,
}

impl Handler<RemoveOrchestrator> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Orchestrator, RegistryError>>;

    fn handle(&mut self, msg: RemoveOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        let id = OrchestratorId(msg.id.into());
        if !self.orchestrators.contains_key(&id) {
            return Box::pin(actix::fut::ready(Err(RegistryError::NotFound(id.0.to_string()))));
        }
        let fut = self.store.send(DeleteOrchestrator { id: id.clone() }).timeout(STORE_TIMEOUT);
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            stored(res)?;
            let Some(orch) = act.orchestrators.remove(&id) else {
                return Err(RegistryError::NotFound(id.0.to_string()));
            };
            let pairs = act.remove_orchestrator_pairs(&id);
            tracing::info!(id = %orch.id, url = %orch.url, pairs, "orchestrator removed; its pairs drain");
            Ok(orch)
        }))
    }
}

/// Lists the registry.
#[derive(Message)]
#[rtype(result = "Vec<Orchestrator>")]
pub struct ListOrchestrators;

impl Handler<ListOrchestrators> for Supervisor {
    type Result = MessageResult<ListOrchestrators>;

    fn handle(&mut self, _msg: ListOrchestrators, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.orchestrators.values().cloned().collect())
    }
}

/// Lists pairs, optionally filtered.
#[derive(Message, Default)]
#[rtype(result = "Vec<PairReport>")]
pub struct ListPairs {
    /// Only this capability.
    pub capability: Option<String>,
    /// Only this orchestrator id.
    pub orchestrator: Option<String>,
}

impl Handler<ListPairs> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<PairReport>>;

    fn handle(&mut self, msg: ListPairs, _ctx: &mut Self::Context) -> Self::Result {
        let page = ListPairsPage { capability: msg.capability, orchestrator: msg.orchestrator, offset: 0, limit: None };
        Box::pin(self.settle().into_actor(self).map(move |(), act, _ctx| act.pairs_page(&page).pairs))
    }
}

/// One page of pairs, in a stable order (orchestrator id, then capability), optionally
/// filtered. Only the pairs of the page are turned into reports, so a small page of a large
/// registry is cheap.
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "PairsPage")]
pub struct ListPairsPage {
    /// Only this capability.
    pub capability: Option<String>,
    /// Only this orchestrator id.
    pub orchestrator: Option<String>,
    /// Matching pairs skipped before the page.
    pub offset: usize,
    /// Largest page (`None`: every matching pair from `offset` on).
    pub limit: Option<usize>,
}

/// A page of pairs and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct PairsPage {
    /// Pairs matching the filters, over all pages.
    pub total: usize,
    /// This page.
    pub pairs: Vec<PairReport>,
}

impl Supervisor {
    fn pairs_page(&self, q: &ListPairsPage) -> PairsPage {
        let now = Instant::now();
        let matching = || {
            self.pairs
                .iter()
                .filter(|(k, _)| q.capability.as_deref().is_none_or(|c| k.capability.as_str() == c))
                .filter(|(k, _)| q.orchestrator.as_deref().is_none_or(|o| &*k.orchestrator.0 == o))
        };
        let total =
            if q.capability.is_none() && q.orchestrator.is_none() { self.pairs.len() } else { matching().count() };
        let pairs = matching()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .map(|(_, e)| e.view.read().report(now))
            .collect();
        PairsPage { total, pairs }
    }
}

impl Handler<ListPairsPage> for Supervisor {
    type Result = ResponseActFuture<Self, PairsPage>;

    fn handle(&mut self, msg: ListPairsPage, _ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.settle().into_actor(self).map(move |(), act, _ctx| act.pairs_page(&msg)))
    }
}

/// Whether some orchestrator offers a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// At least one orchestrator offers (or has offered) it; its pairs are on the board.
    Offered,
    /// Nobody offers it.
    NotOffered,
    /// Not known, and the probes for unknown names are spent for now: try again after this.
    RateLimited(Duration),
}

/// Makes sure pairs exist for a capability and waits (up to the probe wait) for their first
/// token probes. Called by the router when the scoreboard does not know a capability, or
/// knows it but some of its pairs are still waiting for their first probe.
#[derive(Message)]
#[rtype(result = "Availability")]
pub struct EnsureCapability {
    /// The capability asked for.
    pub capability: Capability,
}

impl Handler<EnsureCapability> for Supervisor {
    type Result = ResponseActFuture<Self, Availability>;

    fn handle(&mut self, msg: EnsureCapability, _ctx: &mut Self::Context) -> Self::Result {
        let cap = msg.capability;
        let now = Instant::now();
        if self.not_offered.get(&cap).is_some_and(|t| *t > now) || self.orchestrators.is_empty() {
            return Box::pin(actix::fut::ready(Availability::NotOffered));
        }
        let mut waiting = Vec::new();
        if self.registered.contains(&cap) {
            // Its pairs are the ones orchestrators declare or offer, and the surveys' still
            // asking: wait for those on their first probe.
            for (key, entry) in self.pairs.iter().filter(|(k, _)| k.capability == cap) {
                let v = entry.view.read();
                if entry.on_board && v.routable_at(now).is_ok() {
                    return Box::pin(actix::fut::ready(Availability::Offered));
                }
                if !v.probed {
                    waiting.push((key.clone(), entry.addr.clone()));
                }
            }
        } else {
            if !self.pairs.keys().any(|k| k.capability == cap) {
                // A name nobody is known to offer: probing it costs one probe per orchestrator.
                let cost = self.orchestrators.len() as f64;
                if let Err(wait) = self.name_probes.try_spend(cost, self.discovery_burst(), now) {
                    metrics::counter!(m::DISCOVERY_RATE_LIMITED_TOTAL).increment(1);
                    return Box::pin(actix::fut::ready(Availability::RateLimited(wait)));
                }
            }
            let keys: Vec<PairKey> = self
                .orchestrators
                .keys()
                .map(|o| PairKey { orchestrator: o.clone(), capability: cap.clone() })
                .collect();
            for key in keys {
                self.spawn_pair(key.clone(), false);
                if let Some(e) = self.pairs.get(&key) {
                    waiting.push((key, e.addr.clone()));
                }
            }
        }
        // Each pair answers the snapshot after its first token probe: waiting on them
        // (bounded) lets a job that arrived during start-up or right after a hot-add be routed
        // instead of refused.
        let wait = self.probe_wait;
        let probes = join_all(waiting.into_iter().map(move |(_, a)| a.send(Snapshot).timeout(wait)));
        Box::pin(probes.into_actor(self).map(move |_answers, act, _ctx| {
            let keys: Vec<PairKey> = act.pairs.keys().filter(|k| k.capability == cap).cloned().collect();
            let offered = keys.iter().any(|k| act.pairs.get(k).is_some_and(|e| e.view.read().offered));
            if offered {
                act.not_offered.remove(&cap);
                // Every orchestrator was just asked about a new name: no survey needed.
                act.register_capability(&cap, false);
                for key in &keys {
                    act.decide(key);
                }
                return Availability::Offered;
            }
            if act.registered.contains(&cap) {
                for key in &keys {
                    act.decide(key);
                }
            } else {
                for key in &keys {
                    act.remove_pair(key);
                }
            }
            if act.not_offered.len() >= NOT_OFFERED_MAX {
                act.not_offered.clear();
            }
            act.not_offered.insert(cap.clone(), Instant::now() + NOT_OFFERED_TTL);
            tracing::debug!(capability = %cap, "no orchestrator offers this capability");
            Availability::NotOffered
        }))
    }
}

/// Forces a pair's breaker open or closed.
#[derive(Message)]
#[rtype(result = "Result<PairReport, RegistryError>")]
pub struct ForcePairBreaker {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Capability name.
    pub capability: String,
    /// Trip (true) or reset (false).
    pub trip: bool,
}

impl Handler<ForcePairBreaker> for Supervisor {
    type Result = ResponseFuture<Result<PairReport, RegistryError>>;

    fn handle(&mut self, msg: ForcePairBreaker, _ctx: &mut Self::Context) -> Self::Result {
        let addr = self.find_pair(&msg.orchestrator, &msg.capability);
        Box::pin(async move {
            let addr = addr?;
            let view = addr
                .send(ForceBreaker { trip: msg.trip })
                .timeout(Duration::from_secs(5))
                .await
                .map_err(|_| RegistryError::Unavailable("pair actor"))?;
            Ok(view.report(Instant::now()))
        })
    }
}

impl Supervisor {
    fn find_pair(&self, orchestrator: &str, capability: &str) -> Result<Addr<PairActor>, RegistryError> {
        let not_found = || RegistryError::PairNotFound(orchestrator.to_string(), capability.to_string());
        let cap = Capability::new(capability).map_err(|_| not_found())?;
        let key = PairKey { orchestrator: OrchestratorId(orchestrator.into()), capability: cap };
        self.pairs.get(&key).map(|e| e.addr.clone()).ok_or_else(not_found)
    }
}

/// Fault injection: makes a pair actor stop as an internal failure would (it is restarted by
/// actix supervision). Used by the supervision tests and chaos runs; only with the
/// `fault-injection` feature.
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct CrashPair {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Capability name.
    pub capability: String,
}

#[cfg(any(test, feature = "fault-injection"))]
impl Handler<CrashPair> for Supervisor {
    type Result = ResponseFuture<Result<(), RegistryError>>;

    fn handle(&mut self, msg: CrashPair, _ctx: &mut Self::Context) -> Self::Result {
        let addr = self.find_pair(&msg.orchestrator, &msg.capability);
        Box::pin(async move {
            addr?
                .send(Crash)
                .timeout(Duration::from_secs(5))
                .await
                .map_err(|_| RegistryError::Unavailable("pair actor"))
        })
    }
}

/// Writes every dirty pair score now (shutdown, or an operator's explicit flush).
#[derive(Message)]
#[rtype(result = "Result<usize, RegistryError>")]
pub struct FlushScores;

impl Handler<FlushScores> for Supervisor {
    type Result = ResponseActFuture<Self, Result<usize, RegistryError>>;

    fn handle(&mut self, _msg: FlushScores, _ctx: &mut Self::Context) -> Self::Result {
        let fut = self.settle().into_actor(self).then(|(), act, _ctx| {
            let (records, generations) = act.dirty_records();
            act.store.send(SavePairs { records }).timeout(STORE_TIMEOUT).into_actor(act).map(move |res, act, _ctx| {
                let n = stored(res)?;
                act.mark_saved(generations);
                Ok(n)
            })
        });
        Box::pin(fut)
    }
}

/// The supervisor's own view for `/admin/supervisor`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SupervisorReport {
    /// Registered orchestrators.
    pub orchestrators: usize,
    /// Registered capabilities.
    pub capabilities: Vec<String>,
    /// Pair actors alive.
    pub pair_actors: usize,
    /// Pair actors by breaker state.
    #[schema(value_type = Object)]
    pub pairs_by_state: BTreeMap<&'static str, u32>,
    /// Routable pairs.
    pub routable: u32,
    /// Restarts summed over all pair actors.
    pub restarts_total: u64,
    /// Pairs that have been restarted, with their counts.
    pub restarted_pairs: Vec<RestartedPair>,
    /// Capabilities remembered as offered by nobody (fast 404s).
    pub not_offered_cached: usize,
    /// Surveys of which orchestrators offer which capabilities.
    pub survey: SurveyReport,
    /// Mailbox pressure on the central actors.
    pub mailbox: MailboxPressure,
    /// When changed pair scores were last written to the store (Unix ms); scores learned
    /// since then are lost by a crash.
    pub scores_saved_at_unix_ms: Option<u64>,
}

/// The surveys of who offers what (see `supervisor/survey.rs`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SurveyReport {
    /// Pairs off the board waiting for their first probe (surveys and capability-name probes).
    pub in_flight: usize,
    /// Walks still queued: hot-added orchestrators, new capabilities, the current pass.
    pub queued_walks: usize,
    /// Pairs asked about since start.
    pub asked: u64,
    /// Of those, pairs found offering (now on the board).
    pub found: u64,
}

/// How loaded the central actors' mailboxes are, measured every second.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MailboxPressure {
    /// How late the supervisor's one-second tick last ran (ms): its mailbox backlog.
    pub supervisor_tick_lag_ms: u64,
    /// Round trip of a message to the store behind its queue (µs), measured every 10 s; null
    /// if it timed out.
    pub store_round_trip_us: Option<u64>,
}

/// A pair with restarts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestartedPair {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Capability.
    pub capability: String,
    /// Restarts.
    pub restarts: u32,
}

/// Asks for the supervisor's view.
#[derive(Message)]
#[rtype(result = "SupervisorReport")]
pub struct GetSupervisorReport;

impl Handler<GetSupervisorReport> for Supervisor {
    type Result = MessageResult<GetSupervisorReport>;

    fn handle(&mut self, _msg: GetSupervisorReport, _ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let mut by_state: BTreeMap<&'static str, u32> = BTreeMap::new();
        let mut routable = 0;
        let mut restarts_total = 0u64;
        let mut restarted = Vec::new();
        for (key, entry) in &self.pairs {
            let v = entry.view.read();
            *by_state.entry(v.breaker.as_str()).or_default() += 1;
            if v.routable_at(now).is_ok() {
                routable += 1;
            }
            restarts_total += u64::from(v.restarts);
            if v.restarts > 0 {
                restarted.push(RestartedPair {
                    orchestrator: key.orchestrator.to_string(),
                    capability: key.capability.to_string(),
                    restarts: v.restarts,
                });
            }
        }
        MessageResult(SupervisorReport {
            orchestrators: self.orchestrators.len(),
            capabilities: self.registered.iter().map(|c| c.to_string()).collect(),
            pair_actors: self.pairs.len(),
            pairs_by_state: by_state,
            routable,
            restarts_total,
            restarted_pairs: restarted,
            not_offered_cached: self.not_offered.len(),
            survey: SurveyReport {
                in_flight: self.off_board.len(),
                queued_walks: self.survey.queued(),
                asked: self.survey.asked,
                found: self.survey.found,
            },
            scores_saved_at_unix_ms: self.scores_saved_at,
            mailbox: MailboxPressure {
                supervisor_tick_lag_ms: self.tick_lag_ms,
                store_round_trip_us: self.store_rtt_us,
            },
        })
    }
}

/// A connect failure on an orchestrator: all its pairs leave rotation and re-probe.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NodeUnreachable {
    /// The orchestrator.
    pub orchestrator: OrchestratorId,
}

impl Handler<NodeUnreachable> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: NodeUnreachable, _ctx: &mut Self::Context) {
        let mut n = 0;
        for (key, entry) in &self.pairs {
            if key.orchestrator == msg.orchestrator {
                // Bounded fan-out (one message per pair of one orchestrator), control plane.
                entry.addr.do_send(PeerUnreachable);
                n += 1;
            }
        }
        tracing::warn!(orchestrator = %msg.orchestrator, pairs = n,
            "connect failure: the orchestrator's pairs leave rotation until re-probed");
    }
}

/// One capability as `/admin/capabilities` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CapabilityReport {
    /// Name.
    pub name: String,
    /// Its own policy, if it has one (otherwise the default policy applies).
    pub policy: Option<CapabilityPolicy>,
    /// The knobs in force.
    #[schema(value_type = Effective)]
    pub effective: Arc<Effective>,
    /// Pair actors of this capability.
    pub pairs: usize,
    /// Pairs whose orchestrator has offered it.
    pub offered_by: usize,
    /// Pairs that can take a job now.
    pub routable: usize,
    /// Jobs its routable pairs may have in flight now (the sum of their concurrency limits).
    pub slots: u64,
    /// Jobs in flight on its pairs.
    pub inflight: u64,
    /// Its wait queue (jobs waiting for a free slot), once it has a board.
    pub queue: Option<QueueReport>,
}

impl Supervisor {
    fn capability_report(&self, cap: &Capability) -> CapabilityReport {
        let now = Instant::now();
        let (mut pairs, mut offered_by, mut routable, mut slots, mut inflight) = (0, 0, 0, 0, 0);
        for entry in self.pairs.iter().filter(|(k, _)| &k.capability == cap).map(|(_, e)| e) {
            let v = entry.view.read();
            pairs += 1;
            offered_by += usize::from(v.offered);
            inflight += u64::from(v.inflight());
            if v.routable_at(now).is_ok() {
                routable += 1;
                slots += u64::from(v.slots.limit());
            }
        }
        CapabilityReport {
            name: cap.to_string(),
            policy: self.policies.get(cap),
            effective: self.policies.effective(cap),
            pairs,
            offered_by,
            routable,
            slots,
            inflight,
            queue: self.scoreboard.queue(cap).map(|q| q.report()),
        }
    }
}

/// Lists registered capabilities (and those with a policy) with their policies.
#[derive(Message)]
#[rtype(result = "Vec<CapabilityReport>")]
pub struct ListCapabilities;

impl Handler<ListCapabilities> for Supervisor {
    type Result = MessageResult<ListCapabilities>;

    fn handle(&mut self, _msg: ListCapabilities, _ctx: &mut Self::Context) -> Self::Result {
        let mut names: BTreeSet<Capability> = self.registered.clone();
        names.extend(self.policies.list().into_iter().map(|(c, _, _)| c));
        MessageResult(names.iter().map(|c| self.capability_report(c)).collect())
    }
}

/// One capability's report; an error if the name is invalid or unknown.
#[derive(Message)]
#[rtype(result = "Result<CapabilityReport, RegistryError>")]
pub struct GetCapability {
    /// The name.
    pub name: String,
}

impl Handler<GetCapability> for Supervisor {
    type Result = Result<CapabilityReport, RegistryError>;

    fn handle(&mut self, msg: GetCapability, _ctx: &mut Self::Context) -> Self::Result {
        let cap = Capability::new(&msg.name).map_err(|e| RegistryError::InvalidCapability(msg.name.clone(), e))?;
        if !self.registered.contains(&cap) && self.policies.get(&cap).is_none() {
            return Err(RegistryError::CapabilityNotFound(msg.name));
        }
        Ok(self.capability_report(&cap))
    }
}

/// Sets a capability's policy: validated, stored durably, then applied to the routers and
/// to every pair of the capability at once. The capability becomes registered (every
/// orchestrator is asked whether it offers it).
#[derive(Message)]
#[rtype(result = "Result<CapabilityReport, RegistryError>")]
pub struct SetCapabilityPolicy {
    /// The capability.
    pub name: String,
    /// Its new policy.
    pub policy: CapabilityPolicy,
}

impl Handler<SetCapabilityPolicy> for Supervisor {
    type Result = ResponseActFuture<Self, Result<CapabilityReport, RegistryError>>;

    fn handle(&mut self, msg: SetCapabilityPolicy, _ctx: &mut Self::Context) -> Self::Result {
        let checked = Capability::new(&msg.name)
            .map_err(|e| RegistryError::InvalidCapability(msg.name.clone(), e))
            .and_then(|cap| {
                self.policies.validate(&msg.policy).map_err(|e| RegistryError::InvalidPolicy(msg.name.clone(), e))?;
                Ok(cap)
            });
        let cap = match checked {
            Ok(c) => c,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let policy = msg.policy;
        let fut = self.store.send(PutPolicy { capability: cap.clone(), policy: policy.clone() }).timeout(STORE_TIMEOUT);
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            stored(res)?;
            let effective = act.policies.set(cap.clone(), policy);
            act.runtime_policies.insert(cap.clone());
            act.push_policy(&cap, &effective);
            act.register_capability(&cap, true);
            tracing::info!(capability = %cap, "capability policy set");
            Ok(act.capability_report(&cap))
        }))
    }
}

/// Removes a capability's runtime policy (set through the admin API): it falls back to the
/// config file's policy for it, or to the default policy. Durable when it answers.
#[derive(Message)]
#[rtype(result = "Result<CapabilityReport, RegistryError>")]
pub struct DeleteCapabilityPolicy {
    /// The capability.
    pub name: String,
}

impl Handler<DeleteCapabilityPolicy> for Supervisor {
    type Result = ResponseActFuture<Self, Result<CapabilityReport, RegistryError>>;

    fn handle(&mut self, msg: DeleteCapabilityPolicy, _ctx: &mut Self::Context) -> Self::Result {
        let cap = match Capability::new(&msg.name) {
            Ok(c) => c,
            Err(e) => return Box::pin(actix::fut::ready(Err(RegistryError::InvalidCapability(msg.name, e)))),
        };
        let fut = self.store.send(DeletePolicy { capability: cap.clone() }).timeout(STORE_TIMEOUT);
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            if !stored(res)? {
                return Err(RegistryError::CapabilityNotFound(format!("{cap} (it has no runtime policy)")));
            }
            act.runtime_policies.remove(&cap);
            let effective = match act.config_policies.get(&cap) {
                Some(p) => act.policies.set(cap.clone(), p.clone()),
                None => act.policies.remove(&cap),
            };
            act.push_policy(&cap, &effective);
            tracing::info!(capability = %cap, "runtime capability policy removed");
            Ok(act.capability_report(&cap))
        }))
    }
}

/// Enables an orchestrator or disables (drains) it: durably, then its pairs follow at once.
#[derive(Message)]
#[rtype(result = "Result<Orchestrator, RegistryError>")]
pub struct SetEnabledOrchestrator {
    /// Which one.
    pub id: String,
    /// The new flag.
    pub enabled: bool,
}

impl Handler<SetEnabledOrchestrator> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Orchestrator, RegistryError>>;

    fn handle(&mut self, msg: SetEnabledOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        let id = OrchestratorId(msg.id.into());
        if !self.orchestrators.contains_key(&id) {
            return Box::pin(actix::fut::ready(Err(RegistryError::NotFound(id.0.to_string()))));
        }
        let enabled = msg.enabled;
        let fut = self.store.send(SetOrchestratorEnabled { id: id.clone(), enabled }).timeout(STORE_TIMEOUT);
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
                        let Some(orch) = stored(res)? else {
                return Err(RegistryError::NotFound(id.0.to_string()));
            };
            act.orchestrators.insert(id.clone(), orch.clone());
            for (key, entry) in &act.pairs {
                if key.orchestrator == id {
                    entry.addr.do_send(SetEnabled(enabled));
                }
            }
            tracing::info!(id = %id, enabled, "orchestrator {}", if enabled { "enabled" } else { "disabled: draining" });
            Ok(orch)
        }))
    }
}

/// Exports what the store holds, taken from memory: the registry and runtime policies are
/// what the store acknowledged, the pair scores are at least as new as the store's. No disk is
/// read or written, so a backup can be taken while the disk is full. Fast-path answers are
/// applied first so that the scores include every answered job.
#[derive(Message)]
#[rtype(result = "Result<StoreExport, RegistryError>")]
pub struct ExportStore;

impl Handler<ExportStore> for Supervisor {
    type Result = ResponseActFuture<Self, Result<StoreExport, RegistryError>>;

    fn handle(&mut self, _msg: ExportStore, _ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.settle().into_actor(self).map(|(), act, _ctx| Ok(act.export())))
    }
}

impl Supervisor {
    /// The store's content as the registry knows it now (see [`ExportStore`]).
    fn export(&self) -> StoreExport {
        let now = Instant::now();
        // The pairs the store has a record of: those of registered capabilities (saved in
        // batches) and any other that was saved once; records loaded at start whose pair has
        // not been started are still in `warm`.
        let mut pairs: Vec<PairRecord> = self
            .pairs
            .iter()
            .filter(|(key, entry)| self.registered.contains(&key.capability) || entry.saved.is_some())
            .filter_map(|(_, entry)| {
                let v = entry.view.read();
                (!v.retired).then(|| v.record(now))
            })
            .chain(self.warm.values().filter(|r| self.orchestrators.contains_key(&r.orchestrator)).cloned())
            .collect();
        pairs.sort_by(|a, b| (&a.orchestrator, &a.capability).cmp(&(&b.orchestrator, &b.capability)));
        let policies = self
            .runtime_policies
            .iter()
            .filter_map(|c| self.policies.get(c).map(|policy| ExportedPolicy { capability: c.clone(), policy }))
            .collect();
        StoreExport {
            format: store::EXPORT_FORMAT.to_string(),
            schema_version: store::SCHEMA_VERSION,
            exported_at_unix_ms: crate::clock::unix_ms_now(),
            orchestrators: self.orchestrators.values().cloned().collect(),
            pairs,
            policies,
        }
    }
}

/// What a configuration reload changed.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Orchestrators added from the config.
    pub orchestrators_added: Vec<String>,
    /// Config orchestrators no longer listed, removed (their pairs drain).
    pub orchestrators_removed: Vec<String>,
    /// Capabilities whose policy changed.
    pub policies_changed: Vec<String>,
    /// Capabilities whose config policy was not applied because a runtime policy wins.
    pub policies_shadowed: Vec<String>,
    /// Settings that changed in the file but take effect only at the next start.
    pub restart_required: Vec<String>,
}

/// Applies a re-read configuration file: static orchestrators (added and removed, with
/// declared capabilities) and capability policies (runtime policies still win). In-flight jobs
/// are not touched; removed orchestrators' pairs drain.
#[derive(Message)]
#[rtype(result = "Result<ReloadReport, RegistryError>")]
pub struct Reload {
    /// Normalised URLs with declared capabilities.
    pub orchestrators: Vec<(String, Vec<Capability>)>,
    /// The file's per-capability policies (already validated).
    pub policies: HashMap<Capability, CapabilityPolicy>,
    /// Settings that changed but are not applied live (reported back as they are).
    pub restart_required: Vec<String>,
}

impl Handler<Reload> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ReloadReport, RegistryError>>;

    fn handle(&mut self, msg: Reload, _ctx: &mut Self::Context) -> Self::Result {
        let fut = self.store.send(ReconcileConfig { entries: msg.orchestrators }).timeout(STORE_TIMEOUT);
        let (policies, restart_required) = (msg.policies, msg.restart_required);
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            let snapshot = stored(res)?;
            let mut report = ReloadReport { restart_required, ..ReloadReport::default() };
            // Registry: what the store now holds is the truth.
            let now_ids: BTreeSet<OrchestratorId> = snapshot.orchestrators.iter().map(|o| o.id.clone()).collect();
            let gone: Vec<OrchestratorId> =
                act.orchestrators.keys().filter(|id| !now_ids.contains(*id)).cloned().collect();
            for id in gone {
                if let Some(o) = act.orchestrators.remove(&id) {
                    report.orchestrators_removed.push(o.url);
                }
                act.remove_orchestrator_pairs(&id);
            }
            let mut new_caps = Vec::new();
            for o in snapshot.orchestrators {
                if !act.orchestrators.contains_key(&o.id) {
                    report.orchestrators_added.push(o.url.clone());
                    act.not_offered.clear();
                    act.survey.orchestrator_added(o.id.clone());
                }
                new_caps.extend(o.capabilities.iter().cloned());
                act.orchestrators.insert(o.id.clone(), o);
            }
            // Policies: the file's, unless a runtime policy wins.
            let names: BTreeSet<Capability> = act.config_policies.keys().chain(policies.keys()).cloned().collect();
            for cap in names {
                let old = act.config_policies.get(&cap).cloned();
                let new = policies.get(&cap).cloned();
                if old == new {
                    continue;
                }
                if act.runtime_policies.contains(&cap) {
                    report.policies_shadowed.push(cap.to_string());
                    continue;
                }
                let effective = match &new {
                    Some(p) => act.policies.set(cap.clone(), p.clone()),
                    None => act.policies.remove(&cap),
                };
                act.push_policy(&cap, &effective);
                report.policies_changed.push(cap.to_string());
                if new.is_some() {
                    new_caps.push(cap.clone());
                }
            }
            act.config_policies = policies;
            for cap in &new_caps {
                act.register_capability(cap, true);
            }
            act.ensure_declared_pairs();
            act.survey_step(ctx);
            tracing::info!(?report, "configuration reloaded");
            Ok(report)
        }))
    }
}
