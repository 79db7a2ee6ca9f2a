//! `Runners`: the Live Runner discovery actor. It reads the orchestrator registry (it does not
//! own it), fetches each orchestrator's `GET /discovery` on a jittered timer, and keeps one pair
//! actor per runner (the BYOC pair actor, fed by discovery records instead of token probes,
//! `pair/offer.rs`) on the app boards.
//!
//! - Targets: the registry's orchestrators (re-read every `registry_sync`), plus, when a remote
//!   signer is configured for discovery, the orchestrators its `GET /discover-orchestrators`
//!   lists that the registry does not (`runners/targets.rs`).
//! - Fetches (`runners/apply.rs`): a success refreshes every listed runner's pair and marks the
//!   runners it no longer lists; an orchestrator that cannot be reached takes its runners out
//!   at once (records kept); any other failure keeps the records, stale, for `grace`, then
//!   expires them (`freshness.rs`). Runners unlisted or expired for `forget_after` are retired.
//! - A pair that needs a fresh record (a connect failure, a capacity refusal, a restart) asks
//!   with [`Rediscover`]; its orchestrator is fetched again at once (at most every 200 ms).

mod apply;
mod report;
mod targets;

pub use report::{DiscoveryTarget, ForceRunner, GetRunnerTargets, ListRunnerPairs};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::boards::Boards;
use super::fetch::{self, FetchError};
use super::freshness::Freshness;
use super::policy::AppPolicies;
use super::record::{Document, Mode, RunnerRecord};
use super::LiveRunnerSettings;
use crate::orchestrator::OrchestratorId;
use crate::pair::{
    Discovered, DiscoveryMiss, PairActor, PairKey, PairSettings, Rediscover, Retire, SetEnabled, SharedView, Tally,
};
use crate::protocol::client::{build_client, ClientBuildError, ClientSettings};
use crate::scoreboard::BoardEntry;
use crate::supervisor::Supervisor;

/// Least time between two fetches of one orchestrator asked for by its pairs.
const REDISCOVER_GAP: Duration = Duration::from_millis(200);
/// Discovery fetches in flight at once, over all orchestrators.
const FETCH_CONCURRENCY: usize = 32;

/// Where a target orchestrator comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetSource {
    /// The gateway's registry.
    Registry,
    /// A remote signer's `GET /discover-orchestrators` (not in the registry).
    Signer,
}

/// One orchestrator whose discovery is fetched.
struct Target {
    url: String,
    source: TargetSource,
    enabled: bool,
    freshness: Freshness,
    fetching: bool,
    /// Asked for again while a fetch was under way: fetch once it ends.
    again: bool,
    last_fetch: Option<Instant>,
    timer: Option<SpawnHandle>,
    /// The last fetch's runners had no free slot somewhere (the next is sooner).
    any_full: bool,
    /// Its runners were told their records expired.
    expired_told: bool,
}

/// One runner and its pair actor.
struct RunnerEntry {
    key: PairKey,
    target: OrchestratorId,
    addr: Addr<PairActor>,
    view: SharedView,
    record: RunnerRecord,
    /// Listed by its orchestrator's last successful fetch.
    listed: bool,
    /// Since when it has been unlisted or expired (forgotten `forget_after` later).
    missing_since: Option<Instant>,
}

/// The actor.
pub struct Runners {
    settings: Arc<LiveRunnerSettings>,
    pair_settings: Arc<PairSettings>,
    client: awc::Client,
    supervisor: Addr<Supervisor>,
    boards: Boards,
    policies: AppPolicies,
    targets: BTreeMap<OrchestratorId, Target>,
    runners: BTreeMap<OrchestratorId, RunnerEntry>,
    permits: Arc<tokio::sync::Semaphore>,
    /// Ids handed to orchestrators found by the signer, by URL.
    signer_ids: HashMap<String, OrchestratorId>,
    next_signer_id: u32,
    last_sync: Option<Instant>,
    last_signer_fetch: Option<Instant>,
    signer_fetching: bool,
}

impl Runners {
    /// The discovery actor; must be built on the arbiter it runs on (it builds an
    /// `awc::Client`).
    pub fn new(
        settings: Arc<LiveRunnerSettings>,
        pair_settings: Arc<PairSettings>,
        client: &ClientSettings,
        supervisor: Addr<Supervisor>,
        boards: Boards,
        policies: AppPolicies,
    ) -> Result<Self, ClientBuildError> {
        Ok(Self {
            settings,
            pair_settings,
            client: build_client(client)?,
            supervisor,
            boards,
            policies,
            targets: BTreeMap::new(),
            runners: BTreeMap::new(),
            permits: Arc::new(tokio::sync::Semaphore::new(FETCH_CONCURRENCY)),
            signer_ids: HashMap::new(),
            next_signer_id: 1,
            last_sync: None,
            last_signer_fetch: None,
            signer_fetching: false,
        })
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if self.last_sync.is_none_or(|t| now.saturating_duration_since(t) >= self.settings.registry_sync) {
            self.last_sync = Some(now);
            self.sync_registry(ctx);
        }
        if self.settings.signer_discovery.is_some()
            && !self.signer_fetching
            && self.last_signer_fetch.is_none_or(|t| now.saturating_duration_since(t) >= self.settings.signer_refresh)
        {
            self.last_signer_fetch = Some(now);
            self.fetch_signer(ctx);
        }
        self.expire(now);
        self.forget(now);
        self.publish_gauges(now);
    }

    /// Fetches `id`'s discovery now (or once the fetch under way ends).
    fn fetch(&mut self, id: &OrchestratorId, ctx: &mut Context<Self>) {
        let Some(t) = self.targets.get_mut(id) else { return };
        if t.fetching {
            t.again = true;
            return;
        }
        if let Some(h) = t.timer.take() {
            ctx.cancel_future(h);
        }
        t.fetching = true;
        t.last_fetch = Some(Instant::now());
        // Each runner's own jobs there as the fetch leaves: the orchestrator counts them in
        // its figures.
        let inflight: HashMap<OrchestratorId, u32> = self
            .runners
            .iter()
            .filter(|(_, r)| &r.target == id)
            .map(|(rid, r)| (rid.clone(), r.view.read().inflight()))
            .collect();
        let (client, permits) = (self.client.clone(), self.permits.clone());
        let (url, origin) = (format!("{}/discovery", t.url), t.url.clone());
        let (timeout, limit) = (self.settings.timeout, self.settings.max_document_bytes);
        let id = id.clone();
        let fut = async move {
            let _permit = permits.acquire().await.ok();
            fetch::fetch(&client, &url, &origin, &[], timeout, limit).await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| act.fetched(&id, res, &inflight, ctx)));
    }

    /// Schedules `id`'s next fetch by its cadence.
    fn schedule(&mut self, id: &OrchestratorId, ctx: &mut Context<Self>) {
        let failing = self.targets.values().filter(|t| t.freshness.failures() > 0).count();
        let Some(t) = self.targets.get_mut(id) else { return };
        if let Some(h) = t.timer.take() {
            ctx.cancel_future(h);
        }
        if std::mem::take(&mut t.again) {
            let since = t.last_fetch.map_or(REDISCOVER_GAP, |l| l.elapsed());
            let wait = REDISCOVER_GAP.saturating_sub(since);
            let id = id.clone();
            t.timer = Some(ctx.run_later(wait, move |act, ctx| act.fetch(&id, ctx)));
            return;
        }
        let delay = crate::pair::probe::jittered(
            t.freshness.next_delay(self.settings.cadence(), t.any_full, failing),
            rand::random::<f64>(),
        );
        let id = id.clone();
        t.timer = Some(ctx.run_later(delay, move |act, ctx| act.fetch(&id, ctx)));
    }

    /// Starts a pair for `rec` (runner `rid` of target `tid`) and puts it on its app's board.
    fn spawn_runner(&mut self, tid: &OrchestratorId, rid: OrchestratorId, rec: RunnerRecord, ctx: &mut Context<Self>) {
        let Some(t) = self.targets.get(tid) else { return };
        let app = rec.app.board_key();
        let key = PairKey { orchestrator: rid.clone(), capability: app.clone() };
        let standing = t.freshness.standing(Instant::now(), self.settings.grace);
        let offer = super::offer::offer(&rec, &rid.0, standing, self.settings.payable);
        let actor = PairActor::new(
            self.pair_settings.clone(),
            self.policies.for_runner(&app, rec.price),
            self.client.clone(),
            key.clone(),
            Arc::new(crate::pair::view::OrchestratorRef { url: Arc::from(t.url.as_str()), label: None }),
            None,
            true,
        )
        .with_enabled(t.enabled)
        .fed_by(crate::pair::OfferSource::Discovery(ctx.address().recipient()))
        .with_discovered(Discovered { offer: Ok(offer), inflight: 0 });
        let (view, tally): (SharedView, Arc<Tally>) = (actor.view(), actor.tally());
        let addr = actix::Supervisor::start(move |_ctx| actor);
        self.boards.of(rec.mode).register(BoardEntry {
            key: key.clone(),
            addr: addr.clone(),
            view: view.clone(),
            tally,
        });
        tracing::info!(runner = %rid, app = %rec.app, mode = rec.mode.as_str(), url = %rec.url, "runner discovered");
        self.runners.insert(
            rid,
            RunnerEntry { key, target: tid.clone(), addr, view, record: rec, listed: true, missing_since: None },
        );
    }

    /// Retires a runner's pair and takes it off its board.
    fn remove_runner(&mut self, rid: &OrchestratorId) {
        if let Some(r) = self.runners.remove(rid) {
            self.boards.of(r.record.mode).unregister(&r.key);
            r.addr.do_send(Retire);
            tracing::info!(runner = %rid, app = %r.record.app, "runner retired");
        }
    }

    /// Tells every runner of `tid` that discovery has no usable record for it.
    fn miss_all(&mut self, tid: &OrchestratorId, miss: &DiscoveryMiss, now: Instant) {
        for r in self.runners.values_mut().filter(|r| &r.target == tid) {
            r.missing_since.get_or_insert(now);
            let inflight = r.view.read().inflight();
            r.addr.do_send(Discovered { offer: Err(miss.clone()), inflight });
        }
    }

    /// Rebuilds the app index from the runners held.
    fn index_apps(&self) {
        let mut apps: BTreeMap<super::AppName, (u32, u32)> = BTreeMap::new();
        for r in self.runners.values() {
            let n = apps.entry(r.record.app.clone()).or_default();
            match r.record.mode {
                Mode::Persistent => n.0 += 1,
                Mode::SingleShot => n.1 += 1,
            }
        }
        self.boards.set_apps(apps);
    }

    /// Expires the records of orchestrators failing for longer than the grace period.
    fn expire(&mut self, now: Instant) {
        let grace = self.settings.grace;
        let expired: Vec<(OrchestratorId, String)> = self
            .targets
            .iter_mut()
            .filter(|(_, t)| !t.expired_told && t.freshness.standing(now, grace) == super::freshness::Standing::Expired)
            .map(|(id, t)| {
                t.expired_told = true;
                (id.clone(), t.freshness.last_error().unwrap_or("no answer").to_string())
            })
            .collect();
        for (id, error) in expired {
            tracing::warn!(orchestrator = %id, grace_s = grace.as_secs(), %error, "discovery failing past the grace period; its runners' records expire");
            let miss = DiscoveryMiss {
                unreachable: false,
                connect: false,
                message: format!("discovery failing for longer than the grace period ({} s): {error}", grace.as_secs()),
                details: None,
            };
            self.miss_all(&id, &miss, now);
        }
    }

    /// Retires runners unlisted or expired for longer than `forget_after`.
    fn forget(&mut self, now: Instant) {
        let after = self.settings.forget_after;
        let old: Vec<OrchestratorId> = self
            .runners
            .iter()
            .filter(|(_, r)| r.missing_since.is_some_and(|t| now.saturating_duration_since(t) >= after))
            .map(|(id, _)| id.clone())
            .collect();
        if !old.is_empty() {
            for id in &old {
                self.remove_runner(id);
            }
            self.index_apps();
        }
    }

    fn publish_gauges(&self, now: Instant) {
        let mut by: BTreeMap<&'static str, u32> =
            ["fresh", "stale", "expired", "unlisted"].into_iter().map(|s| (s, 0)).collect();
        for r in self.runners.values() {
            let standing = self
                .targets
                .get(&r.target)
                .map_or("expired", |t| t.freshness.standing(now, self.settings.grace).as_str());
            let state = if !r.listed { "unlisted" } else { standing };
            *by.entry(state).or_default() += 1;
        }
        for (state, n) in by {
            metrics::gauge!(crate::metrics::RUNNERS, "state" => state).set(f64::from(n));
        }
    }
}

impl Actor for Runners {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.tick(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.tick(ctx));
    }
}

impl Handler<Rediscover> for Runners {
    type Result = ();

    fn handle(&mut self, msg: Rediscover, ctx: &mut Self::Context) {
        let Some(tid) = self.runners.get(&msg.key.orchestrator).map(|r| r.target.clone()) else { return };
        let Some(t) = self.targets.get_mut(&tid) else { return };
        if t.fetching {
            t.again = true;
            return;
        }
        let since = t.last_fetch.map_or(REDISCOVER_GAP, |l| l.elapsed());
        if since >= REDISCOVER_GAP {
            self.fetch(&tid, ctx);
        } else {
            t.again = true;
            self.schedule(&tid, ctx);
        }
    }
}

/// The outcome of one discovery fetch, as applied.
pub(crate) type Fetched = Result<Document, FetchError>;
