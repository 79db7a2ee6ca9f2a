//! What a simulated orchestrator can be told to do (its knobs, changeable at runtime with
//! `POST /sim/knobs`) and what it counts and remembers.

use byoc_actors::protocol::header::JobRequest;
use byoc_actors::protocol::token::EthAddressCredential;
use serde::{Deserialize, Serialize};

/// What a simulated orchestrator does with a job that arrives while `capacity` jobs (its own
/// plus [`Knobs::busy_slots`]) are already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OverCapacity {
    /// Runs it: capacity is only reported in tokens. go-livepeer's orchestrator does this (it
    /// refuses only a capability nobody registered).
    #[default]
    Ignore,
    /// Answers `503 No capacity available for capability`, as a worker with no free slot does.
    Refuse,
    /// Answers `429 Too Many Requests`.
    Refuse429,
    /// Runs it, and every job started while over capacity takes longer in proportion (a GPU
    /// time-sliced between more jobs than it has room for): `latency x running / capacity`.
    Slow,
}

/// Behaviour of one capability on the simulator. Every field can be changed at runtime with
/// `POST /sim/knobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Knobs {
    /// Time to answer a job.
    pub latency_ms: u64,
    /// Extra time per job, uniform in `[0, jitter_ms]` (real inference times vary).
    pub jitter_ms: u64,
    /// Share of jobs answered `500 job not able to be processed`.
    pub error_rate: f64,
    /// Share of jobs answered `500 CUDA out of memory`.
    pub oom_rate: f64,
    /// Concurrent jobs this orchestrator has room for: reported in tokens (minus jobs in
    /// flight and `busy_slots`), enforced as `over_capacity` says.
    pub capacity: i64,
    /// What happens to a job past `capacity`.
    pub over_capacity: OverCapacity,
    /// Slots held by other gateways' jobs: they count against `capacity` like this
    /// simulator's own jobs (an orchestrator shared with other gateways).
    pub busy_slots: i64,
    /// Price in wei per `pixels_per_unit`.
    pub price_per_unit: i64,
    /// Units the price covers.
    pub pixels_per_unit: i64,
    /// The first this-many jobs are cold starts.
    pub cold_start_jobs: u64,
    /// Extra time of a cold-start job.
    pub cold_start_ms: u64,
    /// Never answer jobs (the caller's timeout decides).
    pub hang: bool,
    /// Never answer, not even at the job's `timeout_seconds` (where `hang`, as go-livepeer's
    /// orchestrator, answers 500): a wedged process. Only the caller hanging up ends the job.
    pub stall: bool,
    /// Hold each job, after its latency, until it is released (`POST /sim/release?jobs=N`,
    /// [`SimState::release_jobs`]) or its `timeout_seconds` passes: lets a test keep jobs in
    /// flight for exactly as long as it needs.
    pub hold: bool,
    /// Answer successes as `text/plain` instead of JSON.
    pub wrong_content_type: bool,
    /// Answer every job with this status (and `status_body`).
    pub status: Option<u16>,
    /// Body sent with `status`.
    pub status_body: String,
    /// Answer jobs 503 `No capacity available for capability` (as an orchestrator at
    /// capacity or without the capability does).
    pub refuse: bool,
    /// Answer successes as Server-Sent Events: this many `data: {"n": i, ...}` events, then
    /// `data: [DONE]` (0: a JSON answer).
    pub sse_events: u32,
    /// Pause between two events.
    pub sse_interval_ms: u64,
    /// After the first event, wait until released (`POST /sim/release`) before the rest: shows
    /// that the first event reaches a client before the stream ends.
    pub sse_hold: bool,
    /// Break the stream (abort the connection) after this many events.
    pub sse_fail_after: Option<u32>,
    /// Linger after `[DONE]` as go-livepeer's orchestrator does (`job_orchestrator.go`, SSE
    /// branch): a `data: {"balance": X}` line before `[DONE]`, then blank lines until the
    /// job's `timeout_seconds`, holding the job's capacity slot all the while. Only a client
    /// that hangs up ends it sooner.
    pub sse_linger: bool,
    /// End the events without `[DONE]` and then write blank lines as fast as the connection
    /// takes them until the job's `timeout_seconds`: go-livepeer's orchestrator when its worker's
    /// stream ends without `[DONE]` (the writer loop spins on the closed channel, writing and
    /// flushing `\n`; here in 4 KiB chunks, as those flushes coalesce on a busy connection).
    pub sse_flood: bool,
    /// Refuse every job `400 Could not verify job creds` while serving tokens as usual: an
    /// orchestrator built from a fork that expects another signature scheme.
    pub reject_creds: bool,
    /// The job price lookup fails: `400 Could not get job price`, and the capacity slot
    /// reserved for the job is never freed (as go-livepeer's orchestrator does).
    pub price_unavailable: bool,
    /// The gateway's credit in wei, reported as the token's `balance`. With a price, a job
    /// needs `balance >= 60 s x price` or gets `400 Insufficient balance for request`.
    pub balance: i64,
    /// Behave as an on-chain orchestrator that takes payments: tokens of a priced capability
    /// carry fresh ticket params, `Livepeer-Payment` is verified and credited per sender
    /// (`balance` is then each sender's starting credit), and jobs are debited
    /// `ceil(elapsed) x price`.
    pub tickets: bool,
    /// With `tickets`: a job that carries a payment gets its connection aborted instead of an
    /// answer, as a master orchestrator's handler crashes on a payment it cannot process.
    pub reset_on_payment: bool,
    /// With `tickets`: a taker. Payments are taken (verified and credited as usual), and every
    /// job is answered `400 Insufficient balance for request` all the same, while each token
    /// brings fresh ticket params as go-livepeer's do.
    pub taker: bool,
    /// With a price: each token reports a fresh random balance under 60 s of the price (a lie
    /// that changes with every refresh); the credit jobs are checked against is unchanged.
    pub balance_churn: bool,
    /// With a price: each token alternates the price between `price_per_unit` and this (the
    /// price in force for jobs is the last token's).
    pub price_flip: Option<i64>,
    /// With `tickets`: a defect in the ticket params every token carries.
    pub params_quirk: ParamsQuirk,
    /// Pad a JSON answer to at least this many bytes (a `"padding"` field of `x`s): an
    /// orchestrator returning a large result (an image, a video).
    pub answer_bytes: usize,
    /// Send the answer without a `Content-Length`, in 64 KiB chunks, as go-livepeer's
    /// orchestrator sends any answer larger than Go's 2 KiB response buffer.
    pub answer_chunked: bool,
    /// Streams: answer `/ai/stream/start` with this status (400 says `No capacity available for
    /// capability`, 402 `Insufficient balance for request`, as go-livepeer's orchestrator).
    pub stream_start_status: Option<u16>,
    /// Streams: never answer `/ai/stream/start`.
    pub stream_start_hang: bool,
    /// Streams: the runner publishes no more events (status events and the rest).
    pub stream_events_stop: bool,
    /// Streams: the trickle server stops taking ingress segments (their POST bodies are not
    /// read, no answer comes): an orchestrator not consuming its input.
    pub stream_ingress_stall: bool,
    /// Streams: the runner keeps reading its input but writes no more output.
    pub stream_output_stop: bool,
    /// Streams: answer `/ai/stream/payment` with this status.
    pub stream_payment_status: Option<u16>,
    /// Streams: a status event every this many ms.
    pub stream_event_interval_ms: u64,
    /// Streams (with data output): a data line every this many ms.
    pub stream_data_interval_ms: u64,
    /// Streams, priced with `tickets`: the stream's time is debited every this many ms (go-livepeer:
    /// 23 s every 23 s); a second round that leaves the balance negative removes the stream.
    pub stream_debit_interval_ms: u64,
    /// Streams: seconds of the price debited per round (0: the round's own length, as go-livepeer);
    /// more than the round's length plays a long stream in a short test.
    pub stream_debit_seconds: u64,
    /// Streams: the runner processes real video: each ingress segment (MPEG-TS) goes through
    /// `ffmpeg -vf <this>` (re-encoded with x264, audio copied, timestamps kept) instead of the
    /// marker-line pass-through, so a test can tell processed video from passed-through video.
    pub stream_video_filter: Option<String>,
}

/// A defect in the ticket params a simulated orchestrator issues (knob `params_quirk`), each
/// one that a gateway must refuse to pay against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ParamsQuirk {
    /// Well-formed params, as go-livepeer issues them.
    #[default]
    None,
    /// An empty `recipient_rand_hash` (go-livepeer's is 32 bytes): the nonce set is unnamed.
    EmptyRandHash,
    /// No `expiration_block` and no `expiration_params` (the orchestrator would panic on a
    /// payment without the latter, and params without the former are expired).
    EmptyExpiration,
    /// A negative `creation_round`.
    NegativeRound,
}

impl Knobs {
    /// Checks values a real orchestrator could not have: rates outside [0, 1], negative
    /// capacities, latencies or prices, a price per zero units.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [("error_rate", self.error_rate), ("oom_rate", self.oom_rate)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1 (a share of jobs), got {rate}"));
            }
        }
        if self.error_rate + self.oom_rate > 1.0 {
            return Err(format!("error_rate + oom_rate must be at most 1, got {}", self.error_rate + self.oom_rate));
        }
        for (name, v) in
            [("capacity", self.capacity), ("busy_slots", self.busy_slots), ("price_per_unit", self.price_per_unit)]
        {
            if v < 0 {
                return Err(format!("{name} must not be negative, got {v}"));
            }
        }
        if self.price_flip.is_some_and(|p| p < 0) {
            return Err(format!("price_flip must not be negative, got {:?}", self.price_flip));
        }
        if self.pixels_per_unit < 1 {
            return Err(format!("pixels_per_unit must be at least 1, got {}", self.pixels_per_unit));
        }
        for (name, v) in [
            ("stream_event_interval_ms", self.stream_event_interval_ms),
            ("stream_data_interval_ms", self.stream_data_interval_ms),
            ("stream_debit_interval_ms", self.stream_debit_interval_ms),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            oom_rate: 0.0,
            capacity: 4,
            over_capacity: OverCapacity::Ignore,
            busy_slots: 0,
            price_per_unit: 0,
            pixels_per_unit: 1,
            cold_start_jobs: 0,
            cold_start_ms: 0,
            hang: false,
            stall: false,
            hold: false,
            wrong_content_type: false,
            status: None,
            status_body: String::new(),
            refuse: false,
            sse_events: 0,
            sse_interval_ms: 0,
            sse_hold: false,
            sse_fail_after: None,
            sse_linger: false,
            sse_flood: false,
            reject_creds: false,
            price_unavailable: false,
            balance: 0,
            tickets: false,
            reset_on_payment: false,
            taker: false,
            balance_churn: false,
            price_flip: None,
            params_quirk: ParamsQuirk::None,
            answer_bytes: 0,
            answer_chunked: false,
            stream_start_status: None,
            stream_start_hang: false,
            stream_events_stop: false,
            stream_ingress_stall: false,
            stream_output_stop: false,
            stream_payment_status: None,
            stream_event_interval_ms: 1000,
            stream_data_interval_ms: 500,
            stream_debit_interval_ms: 23_000,
            stream_debit_seconds: 0,
            stream_video_filter: None,
        }
    }
}

/// Counters per capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapStats {
    /// Token probes answered.
    pub tokens: u64,
    /// Jobs received (valid header).
    pub jobs: u64,
    /// Jobs answered 2xx.
    pub ok: u64,
    /// Jobs answered with an error status.
    pub errors: u64,
    /// Jobs refused because the orchestrator was at capacity (`over_capacity` refuse modes;
    /// also counted in `errors`).
    pub refused: u64,
    /// Most jobs that were running at once (this simulator's own, refused ones excluded).
    pub max_inflight: i64,
    /// Most jobs that were running at once while a cold-start job (one of the first
    /// `cold_start_jobs`) was running: a gateway that waits for a cold container's first
    /// answer before sending more keeps it at 1.
    #[serde(default)]
    pub max_inflight_cold: i64,
    /// Capacity slots reserved for jobs and never freed, as go-livepeer's orchestrator leaks
    /// them when it refuses a job after reserving (a `request` it cannot decode, a price it
    /// cannot get). They count against `capacity` from then on.
    pub leaked_slots: i64,
}

/// What the simulator last received from a gateway (`GET /sim/last`), decoded. The simulator
/// does not verify signatures (an offchain orchestrator accepts any); this lets a test or an
/// operator verify them independently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSeen {
    /// The `Livepeer-Eth-Address` credential of the last token probe.
    pub token_credential: Option<EthAddressCredential>,
    /// The `Livepeer` header of the last job.
    pub job: Option<JobRequest>,
    /// The last `Livepeer-Payment` received, as sent (base64).
    #[serde(default)]
    pub payment: Option<String>,
}
