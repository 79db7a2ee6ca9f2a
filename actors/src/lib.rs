//! The domain of byoc-gateway: actors, their messages, the pure health state machines, the
//! Livepeer BYOC protocol client and the store. Nothing here knows about HTTP routing.
//!
//! # Layout
//! - [`capability`], [`orchestrator`]: the validated names the registry is keyed by.
//! - [`clock`]: wall-clock helpers and the bound on durations (a leaf).
//! - [`protocol`]: the wire protocol (job header codec, token probe, job forwarding, signer).
//! - [`breaker`], [`score`], [`budget`], [`limit`], [`client_errors`]: pure, unit-tested health
//!   logic (no clocks, no I/O).
//! - [`outcome`]: how an upstream call ended (the one place answers are classified).
//! - [`queue`]: a capability's wait queue for jobs that found every pair full.
//! - [`ratelimit`]: a token bucket (probes spent discovering capability names).
//! - [`memory`]: byte budgets bounding the bodies and answers held in memory.
//! - [`log_limit`]: log lines that clients can cause at any rate, limited per interval with a
//!   count of what was left out.
//! - [`policy`]: per-capability routing policy (profiles, retry knobs).
//! - [`payment`]: tickets, their hash and signature, the `Livepeer-Payment` message (the
//!   pure part of payments; not yet used on the job path).
//! - [`pair`]: `PairActor`, one per (orchestrator, capability), owning that pair's health.
//! - [`scoreboard`]: the per-capability boards the HTTP workers select pairs from (the design
//!   card's `Dispatcher`, not an actor: see `docs/architecture.md`).
//! - [`supervisor`]: `Supervisor`, the registry; starts, restarts and retires pair actors.
//! - [`discovery`]: `Discovery`, the orchestrator webhook (`--orch-webhook-url`) fetcher.
//! - [`history`]: the status page's recent past, a bounded ring of samples (pure).
//! - [`store`]: `Store`, the sled database on a `SyncArbiter`.
//! - [`registry`]: the registry's write side behind one trait, with a sled and an etcd backend
//!   (fleets), and how fresh this replica's copy is.
//! - [`route`]: the attempt loop of one job (select, admit, call, record, fail over).
//! - [`liverunner`]: Live Runner apps: runners found by discovery as pairs, calls, sessions and
//!   live payments.
//! - [`metrics`]: metric names.
//!
//! # Threads
//! The supervisor and pair actors live on one arbiter and share state only
//! through messages and the views pairs publish. The store has its own thread. Upstream
//! calls run on the HTTP worker threads, each with its own `awc::Client`.

pub mod breaker;
pub mod budget;
pub mod capability;
mod client_errors;
mod clock;
pub mod discovery;
pub mod history;
mod limit;
pub mod liverunner;
pub mod log_limit;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod orchestrator;
mod outcome;
pub mod pair;
pub mod payment;
pub mod policy;
pub mod protocol;
mod queue;
mod ratelimit;
pub mod registry;
pub mod route;
pub mod score;
pub mod scoreboard;
pub mod store;
pub mod stream;
pub mod supervisor;
