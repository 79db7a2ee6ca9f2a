//! Probabilistic micropayments as go-livepeer's gateway sends them with a BYOC job (the
//! `Livepeer-Payment` header), the pure part: ticket parameters as the token carries them, the
//! ticket hash and its signature, the `net.Payment` message, and how many tickets a cost needs.
//! Byte layouts and known answers: `docs/payments.md` (from go-livepeer's `pm/` and
//! `byoc/payment.go`).
//!
//! [`plan`] decides how much to pay before a job (enough to pass the orchestrator's 60 s
//! minimum, which go-livepeer's gateway misses for short jobs) under the operator's limits;
//! [`params`] refuses ticket params unfit to pay against; `nonces` hands out nonces per
//! ticket-params set; `backoff` keeps a pair that took a payment and then refused the job out
//! for a doubling time. The ledger and the job path are in `route/pay.rs`.

pub(crate) mod backoff;
pub(crate) mod count;
pub(crate) mod nonces;
pub mod params;
pub mod plan;
pub mod ticket;
pub mod verify;
pub mod wire;

pub use count::ticket_count_for_cost;
pub use nonces::Nonces;
pub use params::ParamsFault;
pub use plan::{
    check_params, plan, Limits, PayError, Plan, DEFAULT_MAX_EV_PER_CAPABILITY_HOUR, DEFAULT_MAX_FACE_VALUE,
};
pub(crate) use ticket::TicketParams;
