//! The oracle: the latencies the same arrivals would see if every job went to the fastest
//! orchestrator that is up, healthy and has a free slot at that instant, knowing the schedule
//! perfectly (no detection delay, no failed attempt). When every healthy member is full, jobs
//! wait first in, first out for the earliest slot to free. A discrete-event simulation over the
//! [`Timeline`], with job times drawn like the simulators draw them.

use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::pool::{Timeline, MEMBERS};

/// Job latencies (ms) the oracle gives for `arrivals` (offsets from the start of the run).
pub fn latencies(arrivals: &[Duration], timeline: &Timeline, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x0_5ac1e);
    // When each slot of each member is next free (seconds from the start).
    let mut free: Vec<Vec<f64>> = MEMBERS.iter().map(|m| vec![0.0; m.slots as usize]).collect();
    let mut out = Vec::with_capacity(arrivals.len());
    for &arrival in arrivals {
        let t = arrival.as_secs_f64();
        // Fastest member usable now with a free slot.
        let mut best: Option<(usize, usize, u64)> = None;
        for (i, slots) in free.iter().enumerate() {
            let s = timeline.at(i, arrival);
            if !(s.up && s.healthy) {
                continue;
            }
            if let Some(k) = slots.iter().position(|&f| f <= t) {
                if best.is_none_or(|(_, _, l)| s.latency_ms < l) {
                    best = Some((i, k, s.latency_ms));
                }
            }
        }
        let (i, k, start) = match best {
            Some((i, k, _)) => (i, k, t),
            None => {
                // Everyone usable is full: the earliest slot to free among members usable now
                // (FIFO: arrivals are taken in order).
                let mut earliest: Option<(usize, usize, f64)> = None;
                for (i, slots) in free.iter().enumerate() {
                    let s = timeline.at(i, arrival);
                    if !(s.up && s.healthy) {
                        continue;
                    }
                    for (k, &f) in slots.iter().enumerate() {
                        if earliest.is_none_or(|(_, _, e)| f < e) {
                            earliest = Some((i, k, f));
                        }
                    }
                }
                match earliest {
                    Some(e) => e,
                    // Nobody usable at all (never in this schedule): the job waits 1 s and
                    // takes the fastest member's time.
                    None => (0, 0, t + 1.0),
                }
            }
        };
        let s = timeline.at(i, Duration::from_secs_f64(start));
        let jitter = if s.jitter_ms > 0 { rng.random_range(0..=s.jitter_ms) } else { 0 };
        let service = (s.latency_ms + jitter) as f64 / 1000.0;
        free[i][k] = start + service;
        out.push((start + service - t) * 1000.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_light_load_sees_the_fastest_members_own_times() {
        let timeline = Timeline::new(Duration::from_secs(40));
        let arrivals: Vec<Duration> = (0..100).map(|i| Duration::from_millis(100 * i)).collect();
        let l = latencies(&arrivals, &timeline, 1);
        // One job at a time: always the fastest healthy member (50 ms + up to 10 ms).
        assert!(l.iter().all(|&ms| (50.0..=60.0).contains(&ms)), "{l:?}");
    }
}
