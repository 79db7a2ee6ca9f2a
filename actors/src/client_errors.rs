//! A pair's share of 4xx answers, and the rule that finds a pair whose share stands far above
//! its siblings' (the other pairs of the same capability).
//!
//! A 4xx is the client's fault as go-livepeer defines it: relayed as is, never retried, never
//! held against the pair's health. But a pair that answers 4xx to nearly every job while its
//! siblings answer the same capability's jobs is the odd one out (a worker that rejects every
//! input, a model that was swapped): the clients' requests are the same everywhere. Selection
//! then ranks such a pair last and does not hand it the jobs its siblings have no room for;
//! its exploration turns (one job per interval) show when it has recovered.
//!
//! Pure: the pair actor counts, the supervisor compares once a second, selection reads the
//! verdict from the pair's view.

/// Weight of each new answer: the counts decay by `1 - ALPHA` per answer, so about the last 10
/// answers count.
pub(crate) const ALPHA: f64 = 0.1;

/// Answers a pair must have given before it can be judged.
pub(crate) const MIN_ANSWERS: u32 = 10;

/// A pair stands out when its judged share is at least this...
pub(crate) const MIN_SHARE: f64 = 0.5;

/// ...and at least this much above the lowest judged share among its siblings.
pub(crate) const MARGIN: f64 = 0.5;

/// One pair's recent answers (2xx and 4xx, the answers relayed to clients) and how many of them
/// were 4xx, as counts that decay with each new answer.
///
/// Pairs are judged on the share with one pseudo-answer of each kind added (Laplace's rule):
/// `(4xx + 1) / (answers + 2)`. A pair with few answers then sits near one half rather than at
/// 0 or 1, so one lucky sibling answer does not make every other pair look bad, while a pair
/// answering only 4xx (0.88 after 10 answers, at most 0.92) still stands far above a sibling
/// with a single clean answer (0.33, less with more).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ClientErrors {
    /// Decayed count of 4xx answers.
    errors: f64,
    /// Decayed count of answers (at most `1 / ALPHA`).
    recent: f64,
    /// Answers counted since the pair started (saturating).
    answers: u32,
    /// The supervisor found the share far above the siblings' ([`outliers`]): selection ranks
    /// the pair last.
    pub(crate) outlier: bool,
}

impl ClientErrors {
    /// Counts one answer relayed to a client: a 4xx (`true`) or a 2xx.
    pub(crate) fn observe(&mut self, client_error: bool) {
        self.errors = self.errors * (1.0 - ALPHA) + if client_error { 1.0 } else { 0.0 };
        self.recent = self.recent * (1.0 - ALPHA) + 1.0;
        self.answers = self.answers.saturating_add(1);
    }

    /// Share of recent answers that were 4xx, in [0, 1] (0 before any): what the admin API
    /// shows.
    pub(crate) fn share(&self) -> f64 {
        if self.recent > 0.0 {
            (self.errors / self.recent).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The share pairs are judged on: with one pseudo-answer of each kind (one half before any).
    pub(crate) fn judged_share(&self) -> f64 {
        (self.errors + 1.0) / (self.recent + 2.0)
    }

    /// Answers counted since the pair started.
    pub(crate) fn answers(&self) -> u32 {
        self.answers
    }
}

/// For each pair of one capability, `Some(baseline)` when its share stands out: it has given
/// [`MIN_ANSWERS`], its judged share is at least [`MIN_SHARE`], and at least [`MARGIN`] above the
/// lowest judged share among its siblings (`baseline`). A pair without siblings is never an
/// outlier: without a comparison, 4xx answers are the clients'.
pub(crate) fn outliers(pairs: &[ClientErrors]) -> Vec<Option<f64>> {
    // The two lowest judged shares (a pair's own is never its baseline).
    let mut lowest: [Option<(usize, f64)>; 2] = [None, None];
    for (i, p) in pairs.iter().enumerate() {
        let s = p.judged_share();
        if lowest[0].is_none_or(|(_, l)| s < l) {
            lowest = [Some((i, s)), lowest[0]];
        } else if lowest[1].is_none_or(|(_, l)| s < l) {
            lowest[1] = Some((i, s));
        }
    }
    pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let baseline = match lowest {
                [Some((j, _)), other] if j == i => other.map(|(_, s)| s),
                [first, _] => first.map(|(_, s)| s),
            }?;
            let share = p.judged_share();
            (p.answers >= MIN_ANSWERS && share >= MIN_SHARE && share - baseline >= MARGIN).then_some(baseline)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(answers: u32, client_errors: u32) -> ClientErrors {
        let mut p = ClientErrors::default();
        // Spread the 4xx answers evenly (the last answer decides little at ALPHA 0.1).
        for i in 0..answers {
            p.observe(
                u64::from(i) * u64::from(client_errors) / u64::from(answers.max(1))
                    != u64::from(i + 1) * u64::from(client_errors) / u64::from(answers.max(1)),
            );
        }
        p
    }

    #[test]
    fn the_share_follows_recent_answers() {
        assert_eq!(ClientErrors::default().share(), 0.0);
        assert_eq!(ClientErrors::default().judged_share(), 0.5);
        assert!((pair(4, 4).share() - 1.0).abs() < 1e-9);
        assert!((pair(20, 0).share()).abs() < 1e-9);
        let mut p = pair(50, 50);
        assert!(p.share() > 0.99 && p.judged_share() > 0.9, "{p:?}");
        for _ in 0..7 {
            p.observe(false);
        }
        assert!(p.judged_share() < MIN_SHARE, "recovers within a few answers: {p:?}");
    }

    #[test]
    fn a_pair_far_above_its_siblings_stands_out() {
        let bad = pair(20, 20);
        let good = pair(20, 0);
        let verdicts = outliers(&[bad, good]);
        assert!(verdicts[0].is_some() && verdicts[1].is_none(), "{verdicts:?}");
        // One clean answer of a young sibling is enough against a pair answering only 4xx...
        assert!(outliers(&[pair(10, 10), pair(1, 0)])[0].is_some());
        // ...but not against one answering half 4xx (the clients' mistakes, most likely).
        assert_eq!(outliers(&[pair(20, 12), pair(1, 0)]), vec![None, None]);
        // Siblings sharing the clients' mistakes: nobody stands out.
        assert_eq!(outliers(&[pair(20, 10), pair(20, 10), pair(20, 12)]), vec![None, None, None]);
        // Bad clients everywhere, one pair a little worse: still not far above.
        assert_eq!(outliers(&[pair(40, 36), pair(40, 20)]), vec![None, None]);
        // The lowest sibling is the baseline; the bad pair's own share never is.
        let verdicts = outliers(&[pair(20, 20), pair(20, 20), pair(20, 0)]);
        assert!(verdicts[0].is_some() && verdicts[1].is_some() && verdicts[2].is_none(), "{verdicts:?}");
    }

    #[test]
    fn too_few_answers_or_no_sibling_judge_nothing() {
        assert_eq!(outliers(&[pair(MIN_ANSWERS - 1, MIN_ANSWERS - 1), pair(20, 0)]), vec![None, None]);
        assert_eq!(outliers(&[pair(20, 20), pair(0, 0)]), vec![None, None], "a sibling with no answers");
        assert_eq!(outliers(&[pair(30, 30)]), vec![None], "alone: nothing to compare with");
        assert_eq!(outliers(&[]), Vec::<Option<f64>>::new());
    }

    proptest::proptest! {
        #[test]
        fn equal_pairs_never_stand_out_and_verdicts_follow_the_rule(
            shares in proptest::collection::vec((0u32..60, 0u32..=100), 0..12)
        ) {
            let pairs: Vec<ClientErrors> = shares.iter().map(|&(n, pct)| pair(n, n * pct / 100)).collect();
            let verdicts = outliers(&pairs);
            proptest::prop_assert_eq!(verdicts.len(), pairs.len());
            for (i, (p, v)) in pairs.iter().zip(&verdicts).enumerate() {
                let baseline = pairs.iter().enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, q)| q.judged_share())
                    .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.min(s))));
                let share = p.judged_share();
                let expected = baseline.filter(|b| p.answers() >= MIN_ANSWERS && share >= MIN_SHARE && share - b >= MARGIN);
                proptest::prop_assert_eq!(*v, expected);
            }
            let same: Vec<ClientErrors> = pairs.iter().map(|_| pairs.first().copied().unwrap_or_default()).collect();
            proptest::prop_assert!(outliers(&same).iter().all(Option::is_none));
        }
    }
}
