//! Closed-loop clients and what they measured.
//!
//! Each client sends one BYOC job, waits for the whole answer, checks it, and sends the next,
//! until the run's time is up. A job is good when it is answered 200 with the simulator's echo
//! of that very job (its `job_id`), so an empty 200, an error page relayed as 200 or someone
//! else's answer does not count.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use byoc_actors::protocol::header::encode_client_header;
use serde_json::json;

/// One job as a client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// From sending the request to the end of the answer.
    pub latency: Duration,
    /// 200 with the right answer.
    pub good: bool,
    /// HTTP status (0: no answer at all).
    pub status: u16,
}

/// Client-side bound on one job (the job header says 30 s; every proxy gets some slack).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);

/// The `Livepeer` header of job `id`, in the form the orchestrator expects (every field of
/// go-livepeer's `JobRequest`), so the peers can pass it through as is; byoc-gateway reads it
/// as a client header and signs its own.
pub fn header(id: &str) -> String {
    encode_client_header(&json!({
        "id": id,
        "capability": crate::pool::CAPABILITY,
        "request": "{\"stream_id\":\"bench\"}",
        "parameters": "{}",
        "capability_url": "",
        "sender": "",
        "sig": "",
        "timeout_seconds": 30,
    }))
}

/// Sends one job to `url` and checks the answer.
pub async fn job(client: &awc::Client, url: &str, id: &str) -> Sample {
    let started = Instant::now();
    let res = client
        .post(url)
        .insert_header(("Livepeer", header(id)))
        .insert_header(("Content-Type", "application/json"))
        .send_body(r#"{"prompt":"a lighthouse at dusk"}"#)
        .await;
    let (status, good) = match res {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let good = match resp.body().limit(1 << 20).await {
                Ok(body) => {
                    status == 200 && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v["job_id"] == id)
                }
                Err(_) => false,
            };
            (status, good)
        }
        Err(_) => (0, false),
    };
    Sample { latency: started.elapsed(), good, status }
}

/// Runs `clients` closed-loop clients against `url` for `length`.
pub async fn run(url: &str, clients: usize, length: Duration, tag: &str) -> Vec<Sample> {
    let deadline = Instant::now() + length;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = url.to_string();
            let tag = tag.to_string();
            actix_web::rt::spawn(async move {
                let client = awc::Client::builder().timeout(CLIENT_TIMEOUT).finish();
                let mut samples = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    samples.push(job(&client, &url, &format!("{tag}-c{c}-{n}")).await);
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            all.extend(s);
        }
    }
    all
}

/// Sends jobs one by one until `needed` good answers in a row (at most `bound`): the target
/// is up and has seen its orchestrators. Returns whether it got there.
pub async fn warm_up(url: &str, needed: usize, bound: Duration) -> bool {
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let deadline = Instant::now() + bound;
    let (mut streak, mut n) = (0, 0);
    while Instant::now() < deadline {
        n += 1;
        if job(&client, url, &format!("warm-{n}")).await.good {
            streak += 1;
            if streak >= needed {
                return true;
            }
        } else {
            streak = 0;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    false
}

/// What one target achieved.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Jobs sent.
    pub jobs: usize,
    /// Good jobs.
    pub good: usize,
    /// Good jobs per second.
    pub goodput: f64,
    /// Latency percentiles of all jobs in ms, failed jobs ranked after every success (`None`
    /// when the percentile falls on a failed job).
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Slowest good job.
    pub max: f64,
    /// Jobs that were not good, by status (0: no answer).
    pub failures: BTreeMap<u16, usize>,
}

impl Summary {
    /// Summarises `samples` taken over `length`.
    pub fn of(samples: &[Sample], length: Duration) -> Self {
        let good: Vec<f64> = {
            let mut v: Vec<f64> = samples.iter().filter(|s| s.good).map(|s| s.latency.as_secs_f64() * 1000.0).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let jobs = samples.len();
        // Nearest rank over all jobs, where ranks past the good ones are failures.
        let pct = |p: f64| -> Option<f64> {
            if jobs == 0 {
                return None;
            }
            let rank = ((p / 100.0) * jobs as f64).ceil().max(1.0) as usize;
            good.get(rank - 1).copied()
        };
        let mut failures = BTreeMap::new();
        for s in samples.iter().filter(|s| !s.good) {
            *failures.entry(s.status).or_default() += 1;
        }
        Self {
            jobs,
            good: good.len(),
            goodput: good.len() as f64 / length.as_secs_f64(),
            p50: pct(50.0),
            p95: pct(95.0),
            p99: pct(99.0),
            max: good.last().copied().unwrap_or(0.0),
            failures,
        }
    }

    /// Share of good jobs in percent.
    pub fn good_share(&self) -> f64 {
        if self.jobs == 0 {
            0.0
        } else {
            100.0 * self.good as f64 / self.jobs as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_jobs_rank_after_every_success() {
        let ok = |ms| Sample { latency: Duration::from_millis(ms), good: true, status: 200 };
        let bad = Sample { latency: Duration::from_millis(1), good: false, status: 502 };
        let mut samples: Vec<Sample> = (1..=98).map(ok).collect();
        samples.push(bad.clone());
        samples.push(bad);
        let s = Summary::of(&samples, Duration::from_secs(1));
        assert_eq!((s.jobs, s.good), (100, 98));
        assert_eq!(s.p50, Some(50.0));
        assert_eq!(s.p99, None, "the 99th job is a failure");
        assert_eq!(s.failures.get(&502), Some(&2));
    }
}
