//! How much to pay before one job, and with which nonces: pure decisions, no clock and no I/O.
//!
//! go-livepeer's gateway pays `timeout_seconds x price` (rounded up to whole tickets) when the
//! balance is under 120 s of the price, so a first job with `timeout_seconds < 60` bounces off
//! the orchestrator's 60 s minimum. Here a payment tops the balance up to
//! `120 s + max(timeout, 60 s)` of the price: the orchestrator's check passes after the
//! payment, the job is covered, and the next minute of jobs needs no tickets.

use std::time::Duration;

use num_bigint::BigUint;

use super::count::{ticket_count_for_cost, MAX_TICKETS};
use super::params::{validate, ParamsFault};
use super::ticket::TicketParams;

/// Seconds of the price the orchestrator wants as balance after a payment.
pub(crate) const MIN_BALANCE_SECONDS: u64 = 60;
/// Seconds of the price under which a balance is topped up (go-livepeer's `minBal`).
pub(crate) const TOP_UP_BELOW_SECONDS: u64 = 120;

/// The operator's spend limits (go-livepeer's `-maxTicketEV`, `-maxTotalEV`,
/// `-depositMultiplier` equivalents, plus an hourly cap), and how long a pair that refused a
/// job after taking a payment stays out.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest expected value of one ticket, in wei (go-livepeer: 3e12).
    pub max_ticket_ev: f64,
    /// Largest expected value of one payment, in wei (go-livepeer: 2e13).
    pub max_total_ev: f64,
    /// Largest face value of a ticket, in wei (the deposit divided by the multiplier);
    /// `None`: not checked.
    pub max_face_value: Option<BigUint>,
    /// Largest expected value paid per capability over any hour, in wei; `None`: no cap.
    pub max_ev_per_capability_hour: Option<f64>,
    /// How long a pair that refused a job after a payment stays out the first time (doubling
    /// with each refusal until it answers a job).
    pub refusal_backoff: Duration,
    /// The longest it stays out.
    pub refusal_backoff_max: Duration,
}

/// Default `max_face_value`: 10^16 wei (0.01 ETH). One winning ticket takes its face value from
/// the deposit; go-livepeer's orchestrators issue `txCostMultiplier` (100) times a redemption's
/// gas cost, far under this at Arbitrum One's gas prices, and cap it at the sender's reserve
/// share themselves. A taker may not.
pub const DEFAULT_MAX_FACE_VALUE: u64 = 10_000_000_000_000_000;
/// Default `max_ev_per_capability_hour`: 10^15 wei (0.001 ETH) per capability per hour, about
/// six orchestrators kept busy for the hour at $0.50/h each (at $3,000/ETH).
pub const DEFAULT_MAX_EV_PER_CAPABILITY_HOUR: f64 = 1e15;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_ticket_ev: 3e12,
            max_total_ev: 2e13,
            max_face_value: Some(BigUint::from(DEFAULT_MAX_FACE_VALUE)),
            max_ev_per_capability_hour: Some(DEFAULT_MAX_EV_PER_CAPABILITY_HOUR),
            refusal_backoff: Duration::from_secs(60),
            refusal_backoff_max: Duration::from_secs(3600),
        }
    }
}

/// Why no payment can be made for a job (the pair is then out of rotation with a reason).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayError {
    /// The token has a price but no ticket params (an offchain orchestrator that prices).
    #[error("the token prices the capability but carries no ticket parameters")]
    NoTicketParams,
    /// The ticket params are not fit to pay against.
    #[error("the token's ticket params cannot be paid against: {0}")]
    InvalidParams(#[from] ParamsFault),
    /// A ticket's expected value is over `max_ticket_ev`.
    #[error("a ticket's expected value of {ev:.0} wei is over the limit of {limit:.0}")]
    TicketEvOverLimit {
        /// The ticket's EV.
        ev: f64,
        /// The limit.
        limit: f64,
    },
    /// The face value is over `max_face_value`.
    #[error("a ticket's face value of {face} wei is over the limit of {limit}")]
    FaceValueOverLimit {
        /// The face value.
        face: BigUint,
        /// The limit.
        limit: BigUint,
    },
    /// The payment the job needs is over `max_total_ev`.
    #[error("the payment needed ({needed:.0} wei of expected value) is over the limit of {limit:.0} per payment")]
    TotalEvOverLimit {
        /// What the job needs.
        needed: f64,
        /// The limit.
        limit: f64,
    },
    /// The capability's spend over the last hour would pass `max_ev_per_capability_hour`.
    #[error("paying {needed:.0} wei more would pass the spend cap of {cap:.0} wei per hour for this capability")]
    SpendCapReached {
        /// What this payment needs.
        needed: f64,
        /// The cap.
        cap: f64,
    },
    /// The ticket params' nonces are used up (600 per set): wait for the next token.
    #[error("the 600 nonces of these ticket parameters are used up; the next token brings new ones")]
    NoncesExhausted,
}

/// What one job's payment is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Tickets to send (0: the balance is enough, no header).
    pub(crate) tickets: u32,
    /// Their expected value in wei.
    pub(crate) ev: f64,
}

/// Whether tickets drawn from `params` can be paid: the params are sound ([`ParamsFault`]) and
/// fit the operator's per-ticket limits (expected value and face value); the refusal a payment
/// would meet otherwise.
pub fn check_params(params: &TicketParams, limits: &Limits) -> Result<(), PayError> {
    validate(params)?;
    if let Some(limit) = &limits.max_face_value {
        let face = BigUint::from_bytes_be(&params.face_value);
        if &face > limit {
            return Err(PayError::FaceValueOverLimit { face, limit: limit.clone() });
        }
    }
    let ev = params.ev();
    if ev > limits.max_ticket_ev {
        return Err(PayError::TicketEvOverLimit { ev, limit: limits.max_ticket_ev });
    }
    Ok(())
}

/// The payment before a job of `timeout_seconds` at `price` wei per `units` seconds, given the
/// `balance` the orchestrator last reported and its ticket `params`.
pub fn plan(
    price: (i64, i64),
    balance: i64,
    timeout_seconds: u64,
    params: Option<&TicketParams>,
    limits: &Limits,
) -> Result<Plan, PayError> {
    let (per_unit, units) = (price.0.max(0) as f64, price.1.max(1) as f64);
    let per_second = per_unit / units;
    if per_second == 0.0 || balance as f64 >= TOP_UP_BELOW_SECONDS as f64 * per_second {
        return Ok(Plan { tickets: 0, ev: 0.0 });
    }
    let params = params.ok_or(PayError::NoTicketParams)?;
    check_params(params, limits)?;
    let ev = params.ev();
    // Up to 120 s plus the job's own time (at least 60 s): the next minute of jobs needs no
    // tickets, and the orchestrator's 60 s check passes.
    let target = (TOP_UP_BELOW_SECONDS + timeout_seconds.max(MIN_BALANCE_SECONDS)) as f64 * per_second;
    let cost = target - balance as f64;
    let tickets = ticket_count_for_cost(cost, ev, timeout_seconds.min(u64::from(MAX_TICKETS)) as u32);
    let total = f64::from(tickets) * ev;
    // The orchestrator checks 60 s of balance after the payment: a payment that the limit cuts
    // below that would only bounce.
    let floor = MIN_BALANCE_SECONDS as f64 * per_second - balance as f64;
    if total > limits.max_total_ev || (tickets == MAX_TICKETS && total < floor) {
        return Err(PayError::TotalEvOverLimit { needed: cost.min(total.max(cost)), limit: limits.max_total_ev });
    }
    Ok(Plan { tickets, ev: total })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Params whose tickets are worth `ev` wei each (face value `ev x 1000`, win prob 1/1000).
    fn params(ev: u64) -> TicketParams {
        let max = (BigUint::from(1u8) << 256u32) - 1u8;
        TicketParams {
            face_value: BigUint::from(ev * 1000).to_bytes_be(),
            win_prob: (max / 1000u32).to_bytes_be(),
            ..crate::payment::params::tests::sound()
        }
    }

    #[test]
    fn free_or_well_funded_jobs_pay_nothing() {
        let p = params(8_000_000_000);
        assert_eq!(plan((0, 1), 0, 30, None, &Limits::default()), Ok(Plan { tickets: 0, ev: 0.0 }));
        assert_eq!(plan((1000, 1), 120_000, 30, Some(&p), &Limits::default()).map(|p| p.tickets), Ok(0));
        assert_eq!(plan((1000, 1), 0, 30, None, &Limits::default()), Err(PayError::NoTicketParams));
    }

    #[test]
    fn a_short_first_job_pays_enough_to_pass_the_orchestrators_minimum() {
        // The reference's worked example: 4.63e10 wei/s, EV 8e9, timeout 30 s, empty balance.
        // go-livepeer sends ceil(30 x 4.63e10 / 8e9) = 174 tickets, 1.39e12, under the 60 s
        // minimum of 2.78e12: the first job bounces. Here: up to 120 s.
        let p = params(8_000_000_000);
        let price = (46_300_000_000, 1);
        let go = ticket_count_for_cost(30.0 * 4.63e10, 8e9, 30);
        assert_eq!(go, 174);
        assert!(f64::from(go) * 8e9 < 60.0 * 4.63e10, "go-livepeer's payment is short");
        let ours = plan(price, 0, 30, Some(&p), &Limits::default()).expect("plan");
        assert!(ours.ev >= 60.0 * 4.63e10, "{ours:?}");
        // 120 s would take 695 tickets; one payment carries at most 600 (4.8e12), still over
        // the 60 s minimum: the job passes, and the next payment tops up.
        assert_eq!(ours.tickets, 600);
        // A cheaper price: exactly what tops the balance up to 120 s + 60 s.
        let cheap = plan((1_000_000_000, 1), 0, 30, Some(&p), &Limits::default()).expect("plan");
        assert_eq!(cheap.tickets, 23, "180 s x 1e9 / 8e9 = 22.5, 23 tickets");
        // A long job: 120 s plus its timeout.
        let long = plan((1_000_000_000, 1), 0, 100, Some(&p), &Limits::default()).expect("plan");
        assert_eq!(long.tickets, 28, "220 s x 1e9 / 8e9 = 27.5, 28 tickets");
    }

    #[test]
    fn limits_refuse_before_anything_is_signed() {
        let p = params(8_000_000_000);
        let tight = Limits { max_ticket_ev: 1e9, ..Limits::default() };
        assert!(matches!(plan((1000, 1), 0, 30, Some(&p), &tight), Err(PayError::TicketEvOverLimit { .. })));
        let face = Limits { max_face_value: Some(BigUint::from(1_000u32)), ..Limits::default() };
        assert!(matches!(plan((1000, 1), 0, 30, Some(&p), &face), Err(PayError::FaceValueOverLimit { .. })));
        let total = Limits { max_total_ev: 1e11, ..Limits::default() };
        assert!(matches!(plan((46_300_000_000, 1), 0, 30, Some(&p), &total), Err(PayError::TotalEvOverLimit { .. })));
    }
}
