//! Open-loop load: jobs arrive on a Poisson schedule fixed in advance (a seeded generator, so
//! every target gets the same arrivals), each sent at its instant whatever the others are doing,
//! and its latency counted from that scheduled instant, so a target that falls behind is charged
//! for the wait (no coordinated omission). Arrivals alternate between the target's instances.
//!
//! A job is good when it is answered 200 with the simulator's echo of that very job.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use byoc_actors::protocol::header::encode_client_header;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Client-side bound on one job (its header says 30 s; every proxy gets some slack).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);

/// Arrival offsets of a Poisson process of `rate` jobs per second over `length`.
pub fn arrivals(rate: f64, length: Duration, seed: u64) -> Vec<Duration> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = 0.0;
    let mut out = Vec::new();
    loop {
        // Exponential inter-arrival time: -ln(U) / rate, U in (0, 1].
        let u: f64 = 1.0 - rng.random::<f64>();
        t += -u.ln() / rate;
        if t >= length.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(t));
    }
}

/// One job as its client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// From its scheduled arrival to the end of the answer.
    pub latency: Duration,
    /// 200 with the right answer.
    pub good: bool,
    /// HTTP status (0: no answer at all).
    pub status: u16,
}

fn header(id: &str) -> String {
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

async fn job(client: &awc::Client, url: &str, id: &str, scheduled: Instant) -> Sample {
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
    Sample { latency: scheduled.elapsed(), good, status }
}

fn client() -> awc::Client {
    awc::Client::builder().connector(awc::Connector::new().limit(8192)).timeout(CLIENT_TIMEOUT).finish()
}

/// Sends a job at each of `arrivals` (offsets from now), alternating between `urls`, and
/// returns every job's sample once all have ended.
pub async fn run(urls: &[String], arrivals: &[Duration], tag: &str) -> Vec<Sample> {
    let client = client();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(arrivals.len());
    for (n, &at) in arrivals.iter().enumerate() {
        let scheduled = start + at;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url, id) = (client.clone(), urls[n % urls.len()].clone(), format!("{tag}-{n}"));
        tasks.push(actix_web::rt::spawn(async move { job(&client, &url, &id, scheduled).await }));
    }
    let mut all = Vec::with_capacity(tasks.len());
    for t in tasks {
        all.push(t.await.unwrap_or(Sample { latency: CLIENT_TIMEOUT, good: false, status: 0 }));
    }
    all
}

/// Sends jobs one by one to each of `urls` until `needed` good answers in a row there (at most
/// `bound` each): the target is up and has seen its orchestrators.
pub async fn warm_up(urls: &[String], needed: usize, bound: Duration) -> bool {
    let client = client();
    for url in urls {
        let deadline = Instant::now() + bound;
        let (mut streak, mut n) = (0, 0);
        while streak < needed {
            if Instant::now() > deadline {
                return false;
            }
            n += 1;
            if job(&client, url, &format!("warm-{n}"), Instant::now()).await.good {
                streak += 1;
            } else {
                streak = 0;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    true
}

/// Percentiles over all jobs (a failed job ranks after every good one, so a percentile that
/// lands on a failure is `None`), the good share and the failures by status.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Jobs sent.
    pub jobs: usize,
    /// Good jobs.
    pub good: usize,
    /// 50th, 95th and 99th percentiles in ms.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Jobs that were not good, by status (0: no answer).
    pub failures: BTreeMap<u16, usize>,
}

impl Summary {
    /// Summarises latencies of good jobs (`good_ms`) out of `jobs` in all.
    pub fn of(mut good_ms: Vec<f64>, jobs: usize, failures: BTreeMap<u16, usize>) -> Self {
        good_ms.sort_by(f64::total_cmp);
        let pct = |p: f64| -> Option<f64> {
            if jobs == 0 {
                return None;
            }
            let rank = ((p / 100.0) * jobs as f64).ceil().max(1.0) as usize;
            good_ms.get(rank - 1).copied()
        };
        Self { jobs, good: good_ms.len(), p50: pct(50.0), p95: pct(95.0), p99: pct(99.0), failures }
    }

    /// From the samples of a run.
    pub fn of_samples(samples: &[Sample]) -> Self {
        let good = samples.iter().filter(|s| s.good).map(|s| s.latency.as_secs_f64() * 1000.0).collect();
        let mut failures = BTreeMap::new();
        for s in samples.iter().filter(|s| !s.good) {
            *failures.entry(s.status).or_default() += 1;
        }
        Self::of(good, samples.len(), failures)
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
