//! Applying a discovery fetch to an orchestrator's runners: new runners get a pair, listed ones
//! a fresh record, unlisted ones a miss; a failed fetch keeps the records (stale) unless the
//! orchestrator cannot be reached.

use super::*;
use crate::liverunner::freshness::Standing;
use crate::liverunner::offer;

impl Runners {
    /// A fetch of `tid` ended with `res`; `inflight` is each runner's jobs when it left.
    pub(super) fn fetched(
        &mut self,
        tid: &OrchestratorId,
        res: Fetched,
        inflight: &HashMap<OrchestratorId, u32>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let Some(t) = self.targets.get_mut(tid) else { return };
        t.fetching = false;
        let result = match &res {
            Ok(_) => "ok",
            Err(e) => e.class(),
        };
        metrics::counter!(crate::metrics::RUNNER_DISCOVERY_TOTAL, "result" => result).increment(1);
        match res {
            Ok(doc) => {
                if t.freshness.failures() > 0 {
                    tracing::info!(orchestrator = %tid, "discovery answers again");
                }
                t.freshness.succeeded(now);
                t.expired_told = false;
                self.apply_document(tid, doc, inflight, ctx);
            }
            Err(FetchError::Unsupported(why)) => {
                if t.freshness.standing(now, self.settings.grace) != Standing::Unsupported {
                    tracing::debug!(orchestrator = %tid, %why, "no Live Runner at this orchestrator");
                }
                t.freshness.unsupported(why.clone());
                t.any_full = false;
                let miss = DiscoveryMiss { unreachable: false, connect: false, message: why, details: None };
                self.miss_all(tid, &miss, now);
            }
            Err(e) => {
                let first = t.freshness.failures() == 0;
                t.freshness.failed(e.to_string());
                let standing = t.freshness.standing(now, self.settings.grace);
                if first {
                    tracing::warn!(orchestrator = %tid, error = %e, standing = standing.as_str(), "discovery fetch failed");
                }
                if e.unreachable() {
                    // Nothing answers there: a request would fail the same way. The records
                    // are kept (stale) and come back with the next answer.
                    let miss = DiscoveryMiss {
                        unreachable: true,
                        connect: e.connect(),
                        message: format!("its orchestrator's discovery failed: {e}"),
                        details: None,
                    };
                    self.miss_all(tid, &miss, now);
                } else if standing.usable() {
                    // It answers, but not with a document: keep routing on the last records,
                    // marked stale, for the grace period (go-livepeer #4087 dropped them).
                    self.offer_kept(tid, standing, inflight);
                }
            }
        }
        self.schedule(tid, ctx);
    }

    /// Re-sends each listed runner of `tid` its last record, marked `standing`.
    fn offer_kept(&mut self, tid: &OrchestratorId, standing: Standing, inflight: &HashMap<OrchestratorId, u32>) {
        for (rid, r) in self.runners.iter().filter(|(_, r)| &r.target == tid && r.listed) {
            let offer = offer::offer(&r.record, &rid.0, standing, self.settings.payable);
            let inflight = inflight.get(rid).copied().unwrap_or(0);
            r.addr.do_send(Discovered { offer: Ok(offer), inflight });
        }
    }

    /// A document from `tid`: its runners, as listed now.
    fn apply_document(
        &mut self,
        tid: &OrchestratorId,
        doc: Document,
        inflight: &HashMap<OrchestratorId, u32>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        if let Some(first) = doc.skipped.first() {
            tracing::warn!(orchestrator = %tid, skipped = doc.skipped.len(), url = ?first.url, reason = %first.reason,
                "discovery records left out");
            metrics::counter!(crate::metrics::RUNNER_RECORDS_SKIPPED_TOTAL).increment(doc.skipped.len() as u64);
        }
        let mut listed = std::collections::HashSet::new();
        let mut any_full = false;
        let mut changed = false;
        let records: Vec<RunnerRecord> = doc.entries.into_iter().flat_map(|e| e.runners).collect();
        for rec in records {
            let rid = OrchestratorId(Arc::from(format!("{tid}:{}", rec.route)));
            if !listed.insert(rid.clone()) {
                continue;
            }
            any_full |= rec.capacity_available <= 0;
            match self.runners.get_mut(&rid) {
                Some(r) if r.record.app == rec.app && r.record.mode == rec.mode => {
                    if r.record.price.map(|p| p.unit) != rec.price.map(|p| p.unit) {
                        r.addr.do_send(crate::pair::SetPolicy(self.policies.for_runner(&r.key.capability, rec.price)));
                    }
                    let offer = offer::offer(&rec, &rid.0, Standing::Fresh, self.settings.payable);
                    r.record = rec;
                    r.listed = true;
                    r.missing_since = None;
                    let inflight = inflight.get(&rid).copied().unwrap_or(0);
                    r.addr.do_send(Discovered { offer: Ok(offer), inflight });
                }
                other => {
                    if other.is_some() {
                        // The same runner now serves another app or mode: a new pair.
                        self.remove_runner(&rid);
                    }
                    let apps = self.runners.values().map(|r| &r.record.app).collect::<std::collections::BTreeSet<_>>();
                    if !apps.contains(&rec.app) && apps.len() >= self.settings.max_apps {
                        tracing::warn!(orchestrator = %tid, app = %rec.app, max = self.settings.max_apps,
                            "runner left out: as many apps as live_runner.max_apps are known already");
                        metrics::counter!(crate::metrics::RUNNER_RECORDS_SKIPPED_TOTAL).increment(1);
                        continue;
                    }
                    self.spawn_runner(tid, rid, rec, ctx);
                    changed = true;
                }
            }
        }
        if let Some(t) = self.targets.get_mut(tid) {
            t.any_full = any_full;
        }
        let gone: Vec<OrchestratorId> = self
            .runners
            .iter()
            .filter(|(rid, r)| &r.target == tid && !listed.contains(*rid) && r.listed)
            .map(|(rid, _)| rid.clone())
            .collect();
        for rid in gone {
            let Some(r) = self.runners.get_mut(&rid) else { continue };
            r.listed = false;
            r.missing_since.get_or_insert(now);
            tracing::info!(runner = %rid, app = %r.record.app, "runner no longer listed by its orchestrator; out of rotation");
            let details = Arc::new(offer::details(&r.record, &rid.0, Standing::Fresh, false));
            let miss = DiscoveryMiss {
                unreachable: false,
                connect: false,
                message: "its orchestrator's discovery no longer lists it (runner gone, unhealthy or not ready)".into(),
                details: Some(details),
            };
            let inflight = r.view.read().inflight();
            r.addr.do_send(Discovered { offer: Err(miss), inflight });
        }
        if changed {
            self.index_apps();
        }
    }
}
