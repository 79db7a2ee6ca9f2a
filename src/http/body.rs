//! Reading a job's body: bounded per job (`limits.max_body_bytes`, 413), in time
//! (`limits.body_read_timeout`, 408), in pace (`limits.body_min_bytes_per_sec` after
//! `limits.body_rate_grace`, 408), and, over all jobs, by a budget of buffered body bytes
//! (`limits.body_budget_bytes`, 503) of which one client (IP address) may hold only a share
//! (`limits.body_budget_client_percent`, 429).
//!
//! The budget counts the bytes the body really takes in memory as they arrive, not what a
//! `Content-Length` announces: a client that announces a large body and sends it slowly holds
//! only what it has sent, and a body sent in tiny chunks is copied into blocks as it arrives
//! ([`BodyBuilder`]) and costs the same as any other. A body is held once, as those blocks
//! ([`JobBody`]), until its job ends (also while the job waits in a queue), and then its bytes
//! go back to the budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use byoc_actors::memory::{ByteBudget, Reservation};
use byoc_actors::protocol::body::{BodyBuilder, JobBody};
use futures_util::StreamExt as _;
use parking_lot::Mutex;

use super::error::ApiError;

/// How job bodies are read: the per-job bounds of `[limits]`.
#[derive(Debug, Clone)]
pub struct BodyRules {
    /// Largest body (413 past it).
    pub max_bytes: usize,
    /// Time for the whole body (408 past it).
    pub read_timeout: Duration,
    /// Least average rate over each `rate_grace` once the first has passed (0: none).
    pub min_bytes_per_sec: u64,
    /// The grace period, and the window the rate is measured over.
    pub rate_grace: Duration,
}

/// The gateway-wide budget of buffered body bytes, and what each client holds of it.
pub struct BodyBudget {
    bytes: Arc<ByteBudget>,
    /// Most one client (IP address) may hold.
    client_limit: usize,
    /// Bytes held per client; an entry leaves when its client holds nothing.
    clients: Mutex<HashMap<IpAddr, usize>>,
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget").field("bytes", &self.bytes).field("client_limit", &self.client_limit).finish()
    }
}

impl BodyBudget {
    /// A budget of `limit` bytes of which one client may hold `client_percent` %, and at least
    /// `max_body` (one body of the largest size).
    pub fn new(limit: usize, client_percent: u8, max_body: usize) -> Arc<Self> {
        let share = (limit as u128 * u128::from(client_percent.min(100)) / 100) as usize;
        let client_limit = share.max(max_body).min(limit);
        Arc::new(Self {
            bytes: ByteBudget::new(limit, byoc_actors::metrics::BODY_BYTES),
            client_limit,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Bytes held by bodies now.
    pub fn used(&self) -> usize {
        self.bytes.used()
    }

    /// Takes `n` more bytes for `client`, within its share.
    fn take_share(&self, client: IpAddr, n: usize) -> Result<(), usize> {
        let mut clients = self.clients.lock();
        let held = clients.entry(client).or_insert(0);
        if *held + n > self.client_limit {
            let h = *held;
            if h == 0 {
                clients.remove(&client);
            }
            return Err(h);
        }
        *held += n;
        Ok(())
    }

    /// Gives back `n` bytes of `client`'s share.
    fn give_share(&self, client: IpAddr, n: usize) {
        let mut clients = self.clients.lock();
        if let Some(held) = clients.get_mut(&client) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                clients.remove(&client);
            }
        }
    }
}

/// The bytes one body holds of the budget (and of its client's share); given back when
/// dropped.
#[derive(Debug)]
pub struct BodyReservation {
    budget: Arc<BodyBudget>,
    bytes: Reservation,
    client: Option<IpAddr>,
}

impl BodyReservation {
    /// An empty reservation on `budget` for a body from `client` (`None`: no share applies,
    /// as for a connection without a peer address).
    pub fn new(budget: &Arc<BodyBudget>, client: Option<IpAddr>) -> Self {
        // A share of 100 % is no share: the budget's own 503 applies.
        let client = client.filter(|_| budget.client_limit < budget.bytes.limit());
        Self { budget: budget.clone(), bytes: Reservation::new(&budget.bytes), client }
    }

    /// Holds exactly `n` bytes: takes more when the budget and the client's share have them
    /// (the error says which had not), gives back the rest otherwise.
    fn resize_to(&mut self, n: usize) -> Result<(), ApiError> {
        let held = self.bytes.bytes();
        if n <= held {
            if let Some(c) = self.client {
                self.budget.give_share(c, held - n);
            }
            self.bytes.shrink_to(n);
            return Ok(());
        }
        let more = n - held;
        if let Some(c) = self.client {
            self.budget.take_share(c, more).map_err(|h| share_full(&self.budget, c, h + more))?;
        }
        if !self.bytes.try_grow(more) {
            if let Some(c) = self.client {
                self.budget.give_share(c, more);
            }
            return Err(budget_full(&self.budget));
        }
        Ok(())
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        if let Some(c) = self.client {
            self.budget.give_share(c, self.bytes.bytes());
        }
    }
}

/// The 503 of a full budget.
fn budget_full(budget: &BodyBudget) -> ApiError {
    metrics::counter!(byoc_actors::metrics::BODY_BUDGET_REFUSED_TOTAL).increment(1);
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "body-budget-exhausted",
        format!(
            "the gateway holds {} bytes of job bodies, its budget (limits.body_budget_bytes) is {}; retry shortly",
            budget.used(),
            budget.bytes.limit()
        ),
    );
    e.retry_after = Some(1);
    e
}

/// The 429 of a client past its share.
fn share_full(budget: &BodyBudget, client: IpAddr, wanted: usize) -> ApiError {
    metrics::counter!(byoc_actors::metrics::BODY_SHARE_REFUSED_TOTAL).increment(1);
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "body-share-exhausted",
        format!(
            "the job bodies of {client} would take {wanted} bytes, past one client's share of the body budget ({} bytes, limits.body_budget_client_percent); retry once its other jobs are done",
            budget.client_limit
        ),
    );
    e.retry_after = Some(1);
    e
}

/// Reads a request body by `rules`, each block taken from `reserve`'s budget before it is
/// allocated. A declared `Content-Length` over the limit is refused before anything is read, a
/// chunked body as soon as it crosses it.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    payload: actix_web::web::Payload,
    rules: &BodyRules,
    reserve: &mut BodyReservation,
) -> Result<JobBody, ApiError> {
    // A client trickling its body must not hold a connection and a buffer forever.
    match tokio::time::timeout(rules.read_timeout, read_chunks(req, payload, rules, reserve)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!("the request body did not arrive within {}s", rules.read_timeout.as_secs_f64()),
        )),
    }
}

async fn read_chunks(
    req: &actix_web::HttpRequest,
    mut payload: actix_web::web::Payload,
    rules: &BodyRules,
    reserve: &mut BodyReservation,
) -> Result<JobBody, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > rules.max_bytes) {
        return Err(ApiError::body_too_large(rules.max_bytes));
    }
    let mut pace = Pace::new(Instant::now(), rules.min_bytes_per_sec, rules.rate_grace);
    let mut builder = BodyBuilder::new(declared, true);
    loop {
        let next = match pace.next_check() {
            Some(at) => tokio::time::timeout_at(at.into(), payload.next()).await,
            None => Ok(payload.next().await),
        };
        let chunk = match next {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // No byte before the check: the check decides.
            Err(_) => {
                pace.check(Instant::now()).map_err(too_slow)?;
                continue;
            }
        };
        let chunk =
            chunk.map_err(|e| ApiError::bad_request("bad-body", format!("cannot read the request body: {e}")))?;
        if builder.len() + chunk.len() > rules.max_bytes {
            return Err(ApiError::body_too_large(rules.max_bytes));
        }
        reserve.resize_to(builder.charge_after(chunk.len()))?;
        pace.received(chunk.len());
        builder.push(chunk);
        pace.check(Instant::now()).map_err(too_slow)?;
    }
    Ok(builder.finish())
}

/// The 408 of a body arriving too slowly.
fn too_slow(slow: Slow) -> ApiError {
    metrics::counter!(byoc_actors::metrics::BODY_TOO_SLOW_TOTAL).increment(1);
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-too-slow",
        format!(
            "the request body arrived at {} bytes/s over the last {}s, under the minimum of {} bytes/s (limits.body_min_bytes_per_sec)",
            slow.rate,
            slow.window.as_secs_f64(),
            slow.min
        ),
    )
}

/// A body that arrived too slowly over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slow {
    rate: u64,
    min: u64,
    window: Duration,
}

/// The minimum upload rate: after the first `window` (the grace period), and over every
/// `window` after it, a body must have arrived at `min` bytes a second on average. Pure: the
/// caller passes the clock.
#[derive(Debug, Clone)]
struct Pace {
    min: u64,
    window: Duration,
    started: Instant,
    bytes: u64,
}

impl Pace {
    fn new(now: Instant, min: u64, window: Duration) -> Self {
        Self { min, window, started: now, bytes: 0 }
    }

    /// When the current window ends (none when no rate is required).
    fn next_check(&self) -> Option<Instant> {
        (self.min > 0 && !self.window.is_zero()).then(|| self.started + self.window)
    }

    fn received(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// At or past the end of a window: whether it had its bytes (and a new window starts).
    fn check(&mut self, now: Instant) -> Result<(), Slow> {
        let Some(end) = self.next_check() else { return Ok(()) };
        if now < end {
            return Ok(());
        }
        let secs = now.saturating_duration_since(self.started).as_secs_f64();
        if (self.bytes as f64) < self.min as f64 * secs {
            return Err(Slow { rate: (self.bytes as f64 / secs) as u64, min: self.min, window: self.window });
        }
        self.started = now;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn reservations_take_and_give_back_the_budget_and_the_client_share() {
        let budget = BodyBudget::new(100, 50, 10);
        let mut a = BodyReservation::new(&budget, Some(LOCAL));
        assert!(a.resize_to(40).is_ok());
        let mut b = BodyReservation::new(&budget, Some(LOCAL));
        let e = b.resize_to(20).expect_err("past the client's 50 %");
        assert_eq!((e.status.as_u16(), e.code), (429, "body-share-exhausted"));
        assert!(b.resize_to(10).is_ok(), "within the share");
        let mut c = BodyReservation::new(&budget, Some(OTHER));
        assert!(c.resize_to(50).is_ok(), "another client has its own share");
        let e = BodyReservation::new(&budget, None).resize_to(1).expect_err("budget full");
        assert_eq!((e.status.as_u16(), e.code), (503, "body-budget-exhausted"));
        assert_eq!(budget.used(), 100);
        b.resize_to(5).expect("shrinks");
        drop(a);
        assert_eq!(budget.used(), 55);
        assert_eq!(budget.clients.lock().get(&LOCAL), Some(&5));
        drop((b, c));
        assert_eq!(budget.used(), 0);
        assert!(budget.clients.lock().is_empty(), "clients holding nothing are forgotten");
        // 100 %: no share, a full budget is the budget's 503.
        let whole = BodyBudget::new(100, 100, 10);
        let mut a = BodyReservation::new(&whole, Some(LOCAL));
        assert!(a.resize_to(100).is_ok());
        let e = BodyReservation::new(&whole, Some(LOCAL)).resize_to(1).expect_err("full");
        assert_eq!(e.code, "body-budget-exhausted");
        assert!(whole.clients.lock().is_empty());
        // A share never smaller than one body of the largest size.
        assert_eq!(BodyBudget::new(100, 10, 60).client_limit, 60);
    }

    #[test]
    fn a_body_must_keep_its_pace_after_the_grace_period() {
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        let mut p = Pace::new(t0, 1000, 2 * sec);
        assert_eq!(p.next_check(), Some(t0 + 2 * sec));
        p.received(100);
        assert!(p.check(t0 + sec).is_ok(), "within the grace period");
        p.received(1900);
        assert!(p.check(t0 + 2 * sec).is_ok(), "2,000 bytes in 2 s");
        // The next window starts over: a stall fails it, whatever came before.
        p.received(10);
        let slow = p.check(t0 + 4 * sec).expect_err("10 bytes in 2 s");
        assert_eq!(slow, Slow { rate: 5, min: 1000, window: 2 * sec });
        assert_eq!(Pace::new(t0, 0, sec).next_check(), None, "0 turns it off");
    }
}
