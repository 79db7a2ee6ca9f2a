//! Once a tick: compare each pair's share of 4xx answers with its siblings' (the pairs of the
//! same capability, [`crate::client_errors::outliers`]) and tell the pairs whose standing
//! changed. Selection reads the verdict from their views.

use super::*;
use crate::client_errors::{outliers, ClientErrors};
use crate::pair::ClientErrorVerdict;

impl Supervisor {
    /// Sends [`ClientErrorVerdict`] to every pair whose verdict differs from what it holds.
    /// Pairs without answers (and not deprioritised) are skipped: they can neither stand out
    /// nor be anyone's baseline, and an idle capability costs one view read per pair.
    pub(super) fn judge_client_errors(&self) {
        let mut by_capability: HashMap<&Capability, Vec<(&PairEntry, ClientErrors)>> = HashMap::new();
        for (key, entry) in &self.pairs {
            let errors = entry.view.read().client_errors;
            if errors.answers() > 0 || errors.outlier {
                by_capability.entry(&key.capability).or_default().push((entry, errors));
            }
        }
        for pairs in by_capability.values() {
            let shares: Vec<ClientErrors> = pairs.iter().map(|(_, e)| *e).collect();
            for ((entry, errors), verdict) in pairs.iter().zip(outliers(&shares)) {
                if errors.outlier != verdict.is_some() {
                    entry.addr.do_send(ClientErrorVerdict(verdict));
                }
            }
        }
    }
}
