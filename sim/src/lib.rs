//! A simulated BYOC orchestrator speaking the orchestrator side of the real protocol
//! (`GET /process/token`, `POST /process/request/...`, `POST /capability/register`), with
//! faults that can be changed at runtime: latency (with jitter), cold start, error rate, GPU
//! out-of-memory 500s, hang, wrong content type, forced status, capacity (reported, and
//! optionally enforced as a full GPU worker does: refusing or slowing down), slots held by
//! other gateways, price. A stopped simulator can be restarted on the same address (a crashed
//! container coming back).
//!
//! Used by the demo, the integration tests and the benchmarks; operators can run it with
//! `byoc-gateway sim` (or `byoc-sim`) to rehearse routing policies. Control endpoints live under `/sim/`.
//!
//! A job's answer echoes what arrived (path, job header fields, body length and SHA-256,
//! `Content-Type`), and on the AI-runner paths it also has the fields of the runner's response
//! (`{"images":[{"url","seed","nsfw"}]}` for the image and video pipelines, `{"text"}` for the
//! text ones), so the `livepeer-ai` SDK parses it. The last job received is kept whole
//! ([`SimState::last_job`], `GET /sim/last`) so a test can compare the bytes that arrived with
//! those it sent; `GET /sim/last` also shows the last token credential and job header, so the
//! gateway's signatures can be checked from outside.
//!
//! It also answers as a Live Runner orchestrator (`liverunner.rs`): `GET /discovery`,
//! sessions, single-shot calls, the runners' apps (HTTP, SSE, WebSocket) and live payments, in
//! go-livepeer's or `livepeer/node`'s dialect; and as a go-livepeer remote signer
//! (`signer.rs`: `/sign-orchestrator-info`, `/generate-live-payment` with its 480/481/482).
//!
//! Its own crate: the gateway's `demo` and `sim` commands use it, the tests and benchmarks use
//! it as a dev-dependency, and none of it is part of the routing code.

mod cli;
mod control;
mod knobs;
mod live;
mod liverunner;
mod orchestrator;
mod payments;
mod runner;
mod server;
mod signer;
mod state;
mod stream;

pub use cli::{run, SimArgs};
pub use knobs::{CapStats, Knobs, LastSeen, OverCapacity, ParamsQuirk};
pub use live::{runner_marker, LiveStats};
pub use liverunner::{Dialect, DiscoveryFault, LiveKnobs, LiveRunnerStats, RunnerSpec};
pub use payments::{ticket_ev, PaymentStats, RECIPIENT};
pub use runner::SIM_IMAGE_URL;
pub use server::{start, start_tls, SimHandle};
pub use signer::{start_signer, SignerHandle, SignerState, SignerStats, NO_TICKETS, PRICE_EXCEEDED, REFRESH_SESSION};
pub use state::{sha256_hex, ReceivedJob, SimState};
