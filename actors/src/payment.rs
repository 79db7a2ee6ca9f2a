//! Probabilistic micropayments as go-livepeer's gateway sends them with a BYOC job (the
//! `Livepeer-Payment` header), the pure part: ticket parameters as the token carries them, the
//! ticket hash and its signature, the `net.Payment` message, and how many tickets a cost needs.
//! Byte layouts and known answers: `docs/payments.md` (from go-livepeer's `pm/` and
//! `byoc/payment.go`).
//!
//! [`plan`] decides how much to pay before a job (enough to pass the orchestrator's 60 s
//! minimum, which go-livepeer's gateway misses for short jobs) under the operator's limits, and
//! hands out nonces per ticket-params set.
//!
//! What is not here yet (issue 16): the ledger per (recipient, capability), persisting nonces,
//! per-capability spend caps, attaching the header on the job path and failing over on a
//! payment refusal, and the simulator's verification. Nothing calls this module on the job path
//! today.

pub(crate) mod count;
pub mod plan;
pub mod ticket;
pub mod verify;
pub(crate) mod wire;

pub use count::ticket_count_for_cost;
pub use plan::{check_params, plan, Limits, Nonces, PayError, Plan};
pub(crate) use ticket::TicketParams;
