//! Who offers what. A pair exists for what an orchestrator declares or has been seen to offer;
//! every other (orchestrator, registered capability) is asked about by a survey: the pair is
//! started off the dispatcher's board, makes its first token probe, and goes on the board if
//! the token offered capacity, or is retired if not. This keeps the number of pairs near the
//! number of real offers (an orchestrator declaring nothing still gets pairs for what it
//! offers), where a pair per orchestrator per capability grew as their product.
//!
//! Surveys walk every capability and orchestrator in passes (a pass starts at most every
//! [`PASS_INTERVAL`], so an orchestrator that starts offering something, or was full when
//! asked, is found again). A hot-added orchestrator and a newly registered capability are
//! asked about first. An orchestrator that could not be reached is left out of the walks and
//! asked again on its own, one probe at a time, with the pair probes' back-off (about 1 s
//! doubling, capped as [`probe::retry_cap`] says: every 2 s or so while few are unreachable);
//! the moment it answers, it is walked over every capability at once, so a pair on an
//! orchestrator that comes up late is routable within about two seconds of it answering (it
//! used to wait for the next pass, up to a minute). The probes come out of the budget of
//! discovery probes
//! (`routing.discovery_probes_per_sec`), at most [`IN_FLIGHT_MAX`] run at once, and each walk
//! step examines a bounded number of keys, so probe rate, memory and the supervisor's time
//! stay bounded whatever the registry's size.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Supervisor;
use crate::capability::Capability;
use crate::orchestrator::{Orchestrator, OrchestratorId};
use crate::pair::probe::{self, Cadence};
use crate::pair::{GetView, PairKey};

/// Shortest time between the starts of two survey passes.
pub(super) const PASS_INTERVAL: Duration = Duration::from_secs(60);
/// Surveys (off-board pairs awaiting their first probe) at most at once.
pub(super) const IN_FLIGHT_MAX: usize = 256;
/// Keys one step examines at most (most have a pair already and are skipped).
const SCAN_MAX: usize = 4096;

/// One walk over a row of the (capability x orchestrator) table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Walk {
    /// Every orchestrator, about one capability; resumes after `after`.
    Capability { cap: Capability, after: Option<OrchestratorId> },
    /// One orchestrator, about every registered capability; resumes after `after`.
    Orchestrator { id: OrchestratorId, after: Option<Capability> },
}

/// An orchestrator the survey could not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retry {
    /// Asks in a row that found nothing listening.
    failures: u32,
    /// When to ask again (`None`: an ask is under way).
    next: Option<Instant>,
}

/// The survey's plan: pure, clock-free (callers pass the time), unit-tested.
#[derive(Debug)]
pub(super) struct Survey {
    /// Hot-added orchestrators and newly registered capabilities, asked about first.
    urgent: VecDeque<Walk>,
    /// The current pass: one walk per capability.
    pass: VecDeque<Walk>,
    /// When the next pass may start (`None`: now).
    next_pass: Option<Instant>,
    /// Orchestrators that could not be reached: left out of walks, asked again on a back-off.
    unreachable: BTreeMap<OrchestratorId, Retry>,
    /// When a survey step is already scheduled for, besides the supervisor's tick.
    pub(super) wake_at: Option<Instant>,
    /// Pairs asked about since start.
    pub(super) asked: u64,
    /// Of those, pairs found offering.
    pub(super) found: u64,
}

impl Survey {
    pub(super) fn new() -> Self {
        Self {
            urgent: VecDeque::new(),
            pass: VecDeque::new(),
            next_pass: None,
            unreachable: BTreeMap::new(),
            wake_at: None,
            asked: 0,
            found: 0,
        }
    }

    /// An ask found nothing listening at `id` (connect refused or timed out): it is left out
    /// of walks and asked again after its back-off (`u` uniform in [0, 1), for jitter).
    pub(super) fn unreachable(&mut self, id: &OrchestratorId, now: Instant, cadence: Cadence, u: f64) {
        let failing = self.unreachable.len() + usize::from(!self.unreachable.contains_key(id));
        let r = self.unreachable.entry(id.clone()).or_insert(Retry { failures: 0, next: None });
        r.failures = r.failures.saturating_add(1);
        let delay = probe::jittered(probe::failed_delay(cadence, r.failures, failing), u);
        r.next = Some(now + delay);
    }

    /// `id` answered an ask (whatever it said): its back-off ends, and it is asked about every
    /// registered capability at once. Returns whether it had been unreachable.
    pub(super) fn answered(&mut self, id: &OrchestratorId) -> bool {
        if self.unreachable.remove(id).is_none() {
            return false;
        }
        self.orchestrator_added(id.clone());
        true
    }

    /// Orchestrators the survey cannot reach now.
    pub(super) fn unreachable_count(&self) -> usize {
        self.unreachable.len()
    }

    /// The earliest instant an unreachable orchestrator is due another ask.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.unreachable.values().filter_map(|r| r.next).min()
    }

    /// Asks about `id` and every registered capability before the pass goes on.
    pub(super) fn orchestrator_added(&mut self, id: OrchestratorId) {
        self.urgent.push_back(Walk::Orchestrator { id, after: None });
    }

    /// Asks every orchestrator about `cap` before the pass goes on.
    pub(super) fn capability_registered(&mut self, cap: Capability) {
        let walk = Walk::Capability { cap, after: None };
        if !self.urgent.contains(&walk) {
            self.urgent.push_back(walk);
        }
    }

    /// Walks still queued (urgent and in the pass).
    pub(super) fn queued(&self) -> usize {
        self.urgent.len() + self.pass.len()
    }

    /// Up to `n` pairs to ask about now: unreachable orchestrators due another ask first (one
    /// key each), then keys of a registered capability and an enabled, reachable orchestrator
    /// for which `has_pair` is false, urgent walks first. Starts a pass when the last one is
    /// done and [`PASS_INTERVAL`] has passed since it started.
    pub(super) fn next(
        &mut self,
        n: usize,
        now: Instant,
        orchestrators: &BTreeMap<OrchestratorId, Orchestrator>,
        registered: &BTreeSet<Capability>,
        has_pair: impl Fn(&PairKey) -> bool,
    ) -> Vec<PairKey> {
        let mut out = Vec::new();
        if n == 0 {
            return out;
        }
        self.reasks(&mut out, n, now, orchestrators, registered, &has_pair);
        if self.urgent.is_empty() && self.pass.is_empty() && self.next_pass.is_none_or(|t| now >= t) {
            self.pass = registered.iter().map(|cap| Walk::Capability { cap: cap.clone(), after: None }).collect();
            self.next_pass = Some(now + PASS_INTERVAL);
        }
        let mut scanned = 0;
        let unreachable = &self.unreachable;
        let skip = |id: &OrchestratorId| unreachable.contains_key(id);
        for queue in [&mut self.urgent, &mut self.pass] {
            while let Some(walk) = queue.front_mut() {
                if out.len() >= n {
                    self.asked += out.len() as u64;
                    return out;
                }
                let done = step(walk, &mut out, n, &mut scanned, orchestrators, registered, &has_pair, &skip);
                if done {
                    queue.pop_front();
                }
                if out.len() >= n || scanned >= SCAN_MAX {
                    self.asked += out.len() as u64;
                    return out;
                }
            }
        }
        self.asked += out.len() as u64;
        out
    }

    /// One key for each unreachable orchestrator due another ask (its first registered
    /// capability without a pair), into `out` (at most `n` in all). An orchestrator that has
    /// left the registry, is disabled, or has a pair for everything (its pairs probe it
    /// themselves) is forgotten.
    fn reasks(
        &mut self,
        out: &mut Vec<PairKey>,
        n: usize,
        now: Instant,
        orchestrators: &BTreeMap<OrchestratorId, Orchestrator>,
        registered: &BTreeSet<Capability>,
        has_pair: &impl Fn(&PairKey) -> bool,
    ) {
        let mut forget = Vec::new();
        for (id, r) in &mut self.unreachable {
            if out.len() >= n {
                break;
            }
            if r.next.is_none_or(|t| t > now) {
                continue;
            }
            if !orchestrators.get(id).is_some_and(|o| o.enabled) {
                forget.push(id.clone());
                continue;
            }
            let key = registered
                .iter()
                .map(|c| PairKey { orchestrator: id.clone(), capability: c.clone() })
                .find(|k| !has_pair(k));
            match key {
                Some(k) => {
                    out.push(k);
                    r.next = None;
                }
                None => forget.push(id.clone()),
            }
        }
        for id in forget {
            self.unreachable.remove(&id);
        }
    }
}

/// Advances one walk, pushing the keys to ask about into `out`; true when the walk is done.
/// Orchestrators for which `skip` holds (unreachable: asked on their own) are passed over.
#[allow(clippy::too_many_arguments)]
fn step(
    walk: &mut Walk,
    out: &mut Vec<PairKey>,
    n: usize,
    scanned: &mut usize,
    orchestrators: &BTreeMap<OrchestratorId, Orchestrator>,
    registered: &BTreeSet<Capability>,
    has_pair: &impl Fn(&PairKey) -> bool,
    skip: &impl Fn(&OrchestratorId) -> bool,
) -> bool {
    let consider = |key: PairKey, enabled: bool, out: &mut Vec<PairKey>| {
        if enabled && !skip(&key.orchestrator) && !has_pair(&key) {
            out.push(key);
        }
    };
    match walk {
        Walk::Capability { cap, after } => {
            if !registered.contains(cap) {
                return true;
            }
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            for (id, orch) in orchestrators.range((lower, Bound::Unbounded)) {
                if out.len() >= n || *scanned >= SCAN_MAX {
                    return false;
                }
                *scanned += 1;
                consider(PairKey { orchestrator: id.clone(), capability: cap.clone() }, orch.enabled, out);
                *after = Some(id.clone());
            }
            true
        }
        Walk::Orchestrator { id, after } => {
            let Some(orch) = orchestrators.get(id).filter(|_| !skip(id)) else {
                return true;
            };
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            for cap in registered.range((lower, Bound::Unbounded)) {
                if out.len() >= n || *scanned >= SCAN_MAX {
                    return false;
                }
                *scanned += 1;
                consider(PairKey { orchestrator: id.clone(), capability: cap.clone() }, orch.enabled, out);
                *after = Some(cap.clone());
            }
            true
        }
    }
}

impl Supervisor {
    /// Starts as many surveys as the discovery budget and [`IN_FLIGHT_MAX`] allow. Each
    /// settles its pair when the first probe answers (the tick settles any it missed).
    pub(super) fn survey_step(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let room = IN_FLIGHT_MAX.saturating_sub(self.off_board.len());
        let budget = self.name_probes.available(self.discovery_burst(), now).min(room as u64) as usize;
        let pairs = &self.pairs;
        let keys = self.survey.next(budget, now, &self.orchestrators, &self.registered, |k| pairs.contains_key(k));
        self.schedule_survey(ctx, now);
        if keys.is_empty() {
            return;
        }
        self.name_probes.spend(keys.len() as f64);
        metrics::counter!(crate::metrics::SURVEY_PROBES_TOTAL).increment(keys.len() as u64);
        let wait = self.probe_wait.max(self.settings.token_timeout) + Duration::from_secs(1);
        for key in keys {
            self.spawn_pair(key.clone(), false);
            let Some(entry) = self.pairs.get(&key) else { continue };
            let answered = entry.addr.send(GetView).timeout(wait);
            ctx.spawn(answered.into_actor(self).map(move |_res, act, _ctx| act.decide(&key)));
        }
    }

    /// Runs a survey step when an unreachable orchestrator is due another ask before the next
    /// tick (the tick runs every second; a back-off of about a second would otherwise wait for
    /// it).
    fn schedule_survey(&mut self, ctx: &mut Context<Self>, now: Instant) {
        let Some(due) = self.survey.next_due() else { return };
        if due >= now + Duration::from_secs(1) || self.survey.wake_at.is_some_and(|t| t <= due) {
            return;
        }
        self.survey.wake_at = Some(due);
        ctx.run_later(due.saturating_duration_since(now), |act, ctx| {
            act.survey.wake_at = None;
            act.survey_step(ctx);
        });
    }

    /// The cadence of the survey's asks of unreachable orchestrators: the pair probes'.
    fn survey_cadence(&self) -> Cadence {
        Cadence {
            refresh: self.settings.token_refresh,
            retry: self.settings.token_retry,
            retry_max: self.settings.token_retry_max,
        }
    }

    /// Decides an off-board pair once it has probed: on the board if its capability is
    /// registered and the orchestrator declares or offers it, otherwise retired. A pair still
    /// waiting for its first probe is left alone unless it has waited too long. Whether its
    /// orchestrator answered at all feeds the survey's back-off.
    pub(super) fn decide(&mut self, key: &PairKey) {
        let Some(since) = self.off_board.get(key).copied() else { return };
        let Some(entry) = self.pairs.get(key) else {
            self.off_board.remove(key);
            return;
        };
        let (probed, offered, unreachable, label) = {
            let v = entry.view.read();
            (v.probed, v.offered, v.unreachable, v.orchestrator.label.clone())
        };
        let gave_up = !probed && since.elapsed() > self.probe_wait.max(self.settings.token_timeout) * 4;
        if (probed && unreachable) || gave_up {
            let cadence = self.survey_cadence();
            self.survey.unreachable(&key.orchestrator, Instant::now(), cadence, rand::random::<f64>());
        } else if probed && self.survey.answered(&key.orchestrator) {
            tracing::info!(orchestrator = %key.orchestrator, "survey: the orchestrator answers again; asking it about every capability");
        }
        let declared = self.declares(key);
        let registered = self.registered.contains(&key.capability);
        if registered && (declared || offered) {
            if offered && !declared {
                self.survey.found += 1;
                tracing::info!(pair = %key, orchestrator_label = label.as_ref().map(|l| l.as_str()),
                    "survey: the orchestrator offers this capability; pair on the board");
            }
            self.put_on_board(key);
        } else if probed || gave_up {
            self.remove_pair(key);
        }
    }

    /// Settles every off-board pair (the tick's safety net for surveys whose answer was lost).
    pub(super) fn decide_off_board(&mut self) {
        let keys: Vec<PairKey> = self.off_board.keys().cloned().collect();
        for key in &keys {
            self.decide(key);
        }
    }

    /// The most discovery probes saved up: a second's worth, or one per orchestrator (what
    /// probing one capability name costs).
    pub(super) fn discovery_burst(&self) -> f64 {
        self.name_probe_rate.max(self.orchestrators.len() as f64)
    }

    fn declares(&self, key: &PairKey) -> bool {
        self.orchestrators.get(&key.orchestrator).is_some_and(|o| o.capabilities.contains(&key.capability))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::Source;

    fn cap(s: &str) -> Capability {
        Capability::new(s).expect("valid")
    }

    fn orchs(n: usize) -> BTreeMap<OrchestratorId, Orchestrator> {
        (0..n)
            .map(|i| {
                let id = OrchestratorId(format!("orch-{i:03}").into());
                let o = Orchestrator {
                    id: id.clone(),
                    url: format!("http://o{i}:1"),
                    capabilities: vec![],
                    added_at: 0,
                    source: Source::Admin,
                    enabled: true,
                    label: None,
                };
                (id, o)
            })
            .collect()
    }

    fn keys(v: &[PairKey]) -> Vec<(String, String)> {
        v.iter().map(|k| (k.orchestrator.to_string(), k.capability.to_string())).collect()
    }

    #[test]
    fn a_pass_asks_about_every_key_without_a_pair_once_within_the_budget() {
        let o = orchs(3);
        let reg: BTreeSet<Capability> = [cap("a"), cap("b")].into();
        let has = |k: &PairKey| k.orchestrator.0.as_ref() == "orch-001" && k.capability.as_str() == "a";
        let mut s = Survey::new();
        let t0 = Instant::now();
        let mut all = Vec::new();
        for _ in 0..10 {
            let got = s.next(2, t0, &o, &reg, has);
            assert!(got.len() <= 2, "never more than asked for");
            all.extend(got);
        }
        let want = [("orch-000", "a"), ("orch-002", "a"), ("orch-000", "b"), ("orch-001", "b"), ("orch-002", "b")];
        assert_eq!(keys(&all), want.map(|(o, c)| (o.to_string(), c.to_string())));
        assert_eq!(s.asked, 5);
        // The next pass waits for its interval, then asks again.
        assert!(s.next(10, t0 + PASS_INTERVAL / 2, &o, &reg, has).is_empty());
        assert_eq!(s.next(10, t0 + PASS_INTERVAL, &o, &reg, has).len(), 5);
    }

    #[test]
    fn hot_added_orchestrators_and_new_capabilities_go_before_the_pass() {
        let mut o = orchs(3);
        let reg: BTreeSet<Capability> = [cap("a"), cap("b")].into();
        let none = |_: &PairKey| false;
        let mut s = Survey::new();
        let t0 = Instant::now();
        assert_eq!(s.next(1, t0, &o, &reg, none).len(), 1, "the pass has begun");
        let (new_id, new) = orchs(4).into_iter().next_back().expect("one more");
        o.insert(new_id.clone(), new);
        s.orchestrator_added(new_id);
        let got = s.next(2, t0, &o, &reg, none);
        assert_eq!(keys(&got), vec![("orch-003".into(), "a".into()), ("orch-003".into(), "b".into())]);
        s.capability_registered(cap("b"));
        s.capability_registered(cap("b"));
        assert_eq!(s.queued(), 3, "the pass (a, b) and one urgent walk for b: {s:?}");
        let got = s.next(4, t0, &o, &reg, none);
        assert!(got.iter().all(|k| k.capability.as_str() == "b"), "{got:?}");
    }

    #[test]
    fn a_step_examines_a_bounded_number_of_keys_and_skips_disabled_or_gone_subjects() {
        let mut o = orchs(SCAN_MAX + 10);
        let reg: BTreeSet<Capability> = [cap("a")].into();
        let mut s = Survey::new();
        let t0 = Instant::now();
        // Every key has a pair: one step stops after SCAN_MAX keys, the next finishes.
        assert!(s.next(5, t0, &o, &reg, |_| true).is_empty());
        assert_eq!(s.queued(), 1, "the walk resumes where it stopped");
        assert!(s.next(5, t0, &o, &reg, |_| true).is_empty());
        assert_eq!(s.queued(), 0);
        // A disabled orchestrator is not asked; a removed one's walk ends.
        for orch in o.values_mut() {
            orch.enabled = false;
        }
        s.orchestrator_added(OrchestratorId("orch-gone".into()));
        assert!(s.next(5, t0 + PASS_INTERVAL, &o, &reg, |_| false).is_empty());
    }

    const CADENCE: Cadence =
        Cadence { refresh: Duration::from_secs(10), retry: Duration::from_secs(1), retry_max: Duration::from_secs(30) };

    #[test]
    fn an_unreachable_orchestrator_is_asked_again_on_its_own_back_off_and_walked_once_it_answers() {
        let o = orchs(3);
        let reg: BTreeSet<Capability> = [cap("a"), cap("b")].into();
        let none = |_: &PairKey| false;
        let mut s = Survey::new();
        let t0 = Instant::now();
        let first = s.next(2, t0, &o, &reg, none);
        assert_eq!(keys(&first), vec![("orch-000".into(), "a".into()), ("orch-001".into(), "a".into())]);
        // orch-001 does not answer: the walks pass it over from now on.
        let down = OrchestratorId("orch-001".into());
        s.unreachable(&down, t0, CADENCE, 0.5);
        assert_eq!(s.unreachable_count(), 1);
        let rest = s.next(10, t0, &o, &reg, none);
        assert!(rest.iter().all(|k| k.orchestrator != down), "{rest:?}");
        assert_eq!(rest.len(), 3, "orch-002/a, orch-000/b, orch-002/b");
        // Its own re-asks: one key each time, about 1 s, then 2 s later (few are down).
        assert_eq!(s.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(s.next(10, t0 + Duration::from_millis(900), &o, &reg, none).is_empty());
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(keys(&s.next(10, t1, &o, &reg, none)), vec![("orch-001".into(), "a".into())]);
        assert!(s.next(10, t1, &o, &reg, none).is_empty(), "one ask at a time");
        s.unreachable(&down, t1, CADENCE, 0.5);
        assert_eq!(s.next_due(), Some(t1 + Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(s.next(10, t2, &o, &reg, none).len(), 1);
        s.unreachable(&down, t2, CADENCE, 0.5);
        assert_eq!(s.next_due(), Some(t2 + Duration::from_secs(2)), "capped at 2 s while few are down");
        // It answers: the back-off ends and it is asked about every capability at once.
        assert!(s.answered(&down));
        assert!(!s.answered(&down), "once");
        assert_eq!(s.unreachable_count(), 0);
        let walked = s.next(10, t2, &o, &reg, none);
        assert_eq!(keys(&walked), vec![("orch-001".into(), "a".into()), ("orch-001".into(), "b".into())]);
    }

    #[test]
    fn an_unreachable_orchestrator_with_pairs_for_everything_or_gone_is_forgotten() {
        let mut o = orchs(2);
        let reg: BTreeSet<Capability> = [cap("a")].into();
        let mut s = Survey::new();
        let t0 = Instant::now();
        let (down, gone) = (OrchestratorId("orch-000".into()), OrchestratorId("orch-001".into()));
        s.unreachable(&down, t0, CADENCE, 0.0);
        s.unreachable(&gone, t0, CADENCE, 0.0);
        o.remove(&gone);
        let later = t0 + Duration::from_secs(5);
        // orch-000 has a pair for its only capability: that pair probes it on its own.
        assert!(s.next(10, later, &o, &reg, |k| k.orchestrator == down).is_empty());
        assert_eq!(s.unreachable_count(), 0);
    }
}
