//! Persistence: score batches to the store, and the export built from memory (it works while the
//! disk is full).

use super::*;

impl Supervisor {
    /// Records of pairs whose view changed since last saved, with the generation read, so
    /// that a change made while the write is under way keeps the pair dirty. Only pairs on
    /// the board are saved: a survey's or a name probe's pair that offered nothing would
    /// otherwise grow the store. Nor are the pairs of a discovered capability that has not
    /// answered a job yet ([`Supervisor::note_proven`] runs first): a name a stranger made up
    /// must not come back after a restart.
    pub(super) fn dirty_records(&mut self) -> (Vec<PairRecord>, Vec<(PairKey, u64)>) {
        self.note_proven();
        let now = Instant::now();
        self.pairs
            .iter()
            .filter(|(_, entry)| entry.on_board)
            .filter(|(key, _)| !self.unproven.contains(&key.capability))
            .filter_map(|(key, entry)| {
                let v = entry.view.read();
                (entry.saved != Some(v.generation) && !v.retired).then(|| (v.record(now), (key.clone(), v.generation)))
            })
            .unzip()
    }

    /// Saves the dirty pair scores once `flush_every` has passed since the last batch (one
    /// batch at a time; a failed one is retried at the next).
    pub(super) fn flush_if_due(&mut self, now: Instant, ctx: &mut Context<Self>) {
        if self.flushing || now.duration_since(self.last_flush) < self.flush_every {
            return;
        }
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

    pub(super) fn mark_saved(&mut self, generations: Vec<(PairKey, u64)>) {
        self.scores_saved_at = Some(crate::clock::unix_ms_now());
        for (key, generation) in generations {
            if let Some(entry) = self.pairs.get_mut(&key) {
                entry.saved = Some(generation);
            }
        }
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
    pub(super) fn export(&self) -> StoreExport {
        let now = Instant::now();
        // The pairs the store has a record of: those on the board (saved in batches, see
        // `dirty_records`) and any other that was saved once; a survey's pair that has not
        // offered anything is not among them. Records loaded at start whose pair has not been
        // started are still in `warm`.
        let mut pairs: Vec<PairRecord> = self
            .pairs
            .iter()
            .filter(|(_, entry)| entry.on_board || entry.saved.is_some())
            .filter(|(key, _)| !self.unproven.contains(&key.capability))
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
