//! Probabilistic micropayments as go-livepeer's gateway sends them with a BYOC job (the
//! `Livepeer-Payment` header), the pure part: ticket parameters as the token carries them, the
//! ticket hash and its signature, the `net.Payment` message, and how many tickets a cost needs.
//! Byte layouts and known answers: `docs/payments.md` (from go-livepeer's `pm/` and
//! `byoc/payment.go`).
//!
//! What is not here yet (issue 16): choosing when to pay and how much against a ledger, nonce
//! bookkeeping that survives restarts, spend limits, routing with money, and the simulator's
//! verification. Nothing calls this module on the job path today.

pub mod count;
pub mod ticket;
pub mod wire;

pub use count::ticket_count_for_cost;
pub use ticket::{ExpirationParams, Ticket, TicketParams};
