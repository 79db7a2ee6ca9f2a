//! Selection cost versus board size: [`pick`] (what every job attempt runs: choose a pair and
//! take one of its slots) over 10, 1,000 and 10,000 pairs. A board of 10 is scanned whole;
//! larger ones use power of two choices, which samples a bounded number of views, so the time
//! per pick should not grow with the board.
//!
//! Two boards: all pairs routable, and ~90 % out of rotation (no capacity), where sampling
//! needs more probes to find two eligible pairs.
//!
//! Run: `cargo bench -p byoc-actors --bench selection`.

// Setup failures here are bugs in the bench itself; panicking on them is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use byoc_actors::capability::Capability;
use byoc_actors::orchestrator::OrchestratorId;
use byoc_actors::pair::{PairKey, PairView, SharedView};
use byoc_actors::score::PeakEwma;
use byoc_actors::scoreboard::{pick, Exclusions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use parking_lot::RwLock;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// `n` views with distinct latencies; every `routable_every`-th is routable when that is
/// given (the rest have no capacity, so they are out of rotation), all are routable otherwise.
fn board(n: usize, routable_every: Option<usize>) -> Vec<SharedView> {
    let capability = Capability::new("depth").expect("valid capability");
    (0..n)
        .map(|i| {
            let key =
                PairKey { orchestrator: OrchestratorId(format!("orch-{i}").into()), capability: capability.clone() };
            let mut v = PairView::new(key, Arc::from("http://x"));
            v.probed = true;
            v.offered = true;
            v.token_ok = true;
            let slots = match routable_every {
                Some(k) if i % k != 0 => 0,
                _ => 4,
            };
            v.capacity_ceiling = Some(slots);
            v.slots.set_limit(slots);
            // Spread costs so comparisons are real.
            v.latency = PeakEwma::new(20.0 + (i % 97) as f64 * 3.0, Duration::from_secs(10));
            // Measured now, so no pair is due exploration while the bench runs.
            v.latency.observe(20.0 + (i % 97) as f64 * 3.0, Instant::now());
            Arc::new(RwLock::new(v))
        })
        .collect()
}

fn bench_group(c: &mut Criterion, name: &str, routable_every: Option<usize>) {
    let mut group = c.benchmark_group(name);
    // A typical retry excludes the one orchestrator already tried.
    let exclude = vec![OrchestratorId("orch-1".into())];
    // The thread-local generator, as a job's selection uses.
    let mut rng = rand::rng();
    for n in SIZES {
        let views = board(n, routable_every);
        let now = Instant::now();
        assert!(
            pick(&views, Exclusions::tried(&exclude), now, &mut rng).is_some(),
            "board of {n} must have a routable pair"
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &views, |b, views| {
            // The slot taken is freed as the pick is dropped, as at the end of an attempt.
            b.iter(|| pick(black_box(views), Exclusions::tried(black_box(&exclude)), now, &mut rng));
        });
    }
    group.finish();
}

fn selection(c: &mut Criterion) {
    bench_group(c, "pick/all_routable", None);
    bench_group(c, "pick/10pct_routable", Some(10));
}

criterion_group!(benches, selection);
criterion_main!(benches);
