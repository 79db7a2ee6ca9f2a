//! Property-based tests of the codecs and validators that see untrusted input: the client's
//! `Livepeer` header, the admin JSON bodies (capability policies, breaker configs) and
//! orchestrator URLs.
//!
//! Run with `cargo test -p byoc-actors --test properties`. Case counts are kept moderate so
//! the file runs in a few seconds in a debug build; `PROPTEST_CASES=N` raises them for a
//! longer soak. Failures are not persisted to disk (shrunk inputs are printed instead).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use byoc_actors::breaker::{Breaker, BreakerConfig, Pool};
use byoc_actors::capability::{Capability, MAX_CAPABILITY_LEN};
use byoc_actors::orchestrator::normalize_url;
use byoc_actors::policy::CapabilityPolicy;
use byoc_actors::protocol::header::{
    decode_client_header, decode_job_request, encode_client_header, ClientJob, HeaderError, JobRequest,
    MAX_TIMEOUT_SECONDS,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value};

// ---------------------------------------------------------------------------------------------
// Configuration and helpers
// ---------------------------------------------------------------------------------------------

/// `cases` per property (overridable with `PROPTEST_CASES`), no regression files written into
/// the source tree.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Keys of the client job JSON (and of go-livepeer's `JobRequest`).
const JOB_KEYS: &[&str] = &["capability", "request", "parameters", "timeout_seconds", "id", "sender", "sig"];

/// Fields of `CapabilityPolicy`.
const POLICY_KEYS: &[&str] = &[
    "profile",
    "retry_timeout",
    "max_attempts",
    "per_try_timeout",
    "slow_call_threshold",
    "retry_budget_percent",
    "retry_budget_min_per_sec",
    "max_price_per_unit",
    "pixels_per_unit",
    "response_content_type",
    "cold_start_threshold",
    "cold_start_penalty",
    "cold_start_concurrency",
    "warmup",
    "breaker",
];

/// Fields of `BreakerConfig` (the policy's `breaker` overrides take all but `jitter`).
const BREAKER_KEYS: &[&str] = &[
    "consecutive_failures",
    "base_open",
    "max_open",
    "half_open_permits",
    "jitter",
    "window",
    "min_calls",
    "failure_rate",
    "slow_call_rate",
    "short_pool_permits",
];

/// Fields of the policy's `breaker` overrides.
const BREAKER_OVERRIDE_KEYS: &[&str] = &[
    "consecutive_failures",
    "base_open",
    "max_open",
    "half_open_permits",
    "window",
    "min_calls",
    "failure_rate",
    "slow_call_rate",
    "short_pool_permits",
];

const WARMUP_KEYS: &[&str] = &["path", "body", "content_type", "timeout_seconds"];

/// The characters a capability name may hold, as a regex class.
const CAPABILITY_RE: &str = "[A-Za-z0-9._:-]{1,128}";

/// Asserts what every successfully decoded job must satisfy.
fn assert_job_invariants(job: &ClientJob) -> Result<(), TestCaseError> {
    let cap = job.capability.as_str();
    prop_assert!(Capability::new(cap).is_ok(), "decoded capability {:?} fails Capability::new", cap);
    prop_assert!(!cap.is_empty() && cap.len() <= MAX_CAPABILITY_LEN, "capability length {}", cap.len());
    prop_assert!(
        cap.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')),
        "capability {:?} holds a forbidden character",
        cap
    );
    prop_assert!(
        (1..=MAX_TIMEOUT_SECONDS).contains(&job.timeout_seconds),
        "timeout_seconds {} out of 1..=86400",
        job.timeout_seconds
    );
    prop_assert!(!job.parameters.trim().is_empty(), "parameters must default to {{}}, got {:?}", job.parameters);
    Ok(())
}

/// Decodes `raw` and, when that succeeds, checks the invariants and that the gateway's own
/// re-encoding (to the orchestrator) decodes back to the same job.
fn decode_and_check(raw: Option<&[u8]>) -> Result<(), TestCaseError> {
    if let Ok(job) = decode_client_header(raw) {
        assert_job_invariants(&job)?;
        let req = JobRequest::for_job(&job, String::new(), String::new());
        let encoded = req.encode();
        let back = decode_job_request(&encoded);
        prop_assert_eq!(back.as_ref(), Ok(&req));
        prop_assert_eq!(decode_client_header(Some(encoded.as_bytes())), Ok(job));
    }
    Ok(())
}

fn engine_encode(engine: u8, bytes: &[u8]) -> String {
    match engine % 4 {
        0 => STANDARD.encode(bytes),
        1 => STANDARD_NO_PAD.encode(bytes),
        2 => URL_SAFE.encode(bytes),
        _ => URL_SAFE_NO_PAD.encode(bytes),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn float_value(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Scalars, biased towards the values the codecs care about (small and boundary integers,
/// capability-like strings, humantime-like strings).
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5i64..100_000).prop_map(Value::from),
        select(&[0u64, 1, 20, 21, 86_399, 86_400, 86_401, u64::MAX][..]).prop_map(Value::from),
        any::<f64>().prop_map(float_value),
        (-10.0f64..10.0).prop_map(float_value),
        ".{0,24}".prop_map(Value::String),
        "[A-Za-z0-9._:/ -]{0,16}".prop_map(Value::String),
        humantime_str().prop_map(Value::String),
    ]
}

fn json_key(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![3 => select(known).prop_map(String::from), 1 => "[a-zA-Z_]{0,12}"]
}

/// Arbitrary JSON trees whose object keys are mostly drawn from `known`.
fn json_with_keys(known: &'static [&'static str]) -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_key(known), inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Arbitrary JSON trees (keys from the job header plus random ones).
fn arb_json() -> impl Strategy<Value = Value> {
    json_with_keys(JOB_KEYS)
}

/// A JSON object with a random subset of `fields` (each present with probability `presence`),
/// each holding either a value from `field` (plausible for that field) or, now and then, an
/// arbitrary JSON value.
fn object_of<S>(
    fields: &'static [&'static str],
    presence: f64,
    field: fn(&'static str) -> S,
) -> impl Strategy<Value = Value>
where
    S: Strategy<Value = Value> + 'static,
{
    let per_field: Vec<_> = fields
        .iter()
        .map(|&k| {
            let value = prop_oneof![12 => field(k).boxed(), 1 => json_with_keys(fields).boxed()];
            prop::option::weighted(presence, value).prop_map(move |v| (k, v))
        })
        .collect();
    per_field.prop_map(|entries| {
        Value::Object(entries.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect())
    })
}

/// Job-shaped objects: every key of the header, each usually holding a plausible value.
fn job_object() -> impl Strategy<Value = Value> {
    fn field(k: &'static str) -> BoxedStrategy<Value> {
        match k {
            "capability" => prop_oneof![
                3 => CAPABILITY_RE.prop_map(Value::String),
                1 => ".{0,140}".prop_map(Value::String),
                1 => "[a-z]{120,140}".prop_map(Value::String),
            ]
            .boxed(),
            "timeout_seconds" => prop_oneof![
                3 => (0u64..=90_000).prop_map(Value::from),
                1 => any::<i64>().prop_map(Value::from),
                1 => any::<f64>().prop_map(float_value),
                1 => Just(Value::from(1.0)),
                1 => Just(Value::from(u64::MAX)),
            ]
            .boxed(),
            "request" | "parameters" => prop_oneof![
                ".{0,32}".prop_map(Value::String),
                Just(Value::String(String::new())),
                Just(Value::String("  ".into())),
                arb_json(),
            ]
            .boxed(),
            _ => ".{0,24}".prop_map(Value::String).boxed(),
        }
    }
    object_of(JOB_KEYS, 0.8, field)
}

/// Strings for humantime durations: valid ones (including zero and overflowing ones) and
/// near misses.
fn humantime_str() -> impl Strategy<Value = String> {
    prop_oneof![
        select(&["0s", "0ms", "1ns", "1ms", "5s", "2m", "1h 30m", "2days", "1y", "", " ", "5", "-1s", "1.5s", "s"][..])
            .prop_map(String::from),
        (0u64..100_000, select(&["ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y"][..]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        (any::<u64>(), select(&["ns", "ms", "s", "h", "y"][..])).prop_map(|(n, u)| format!("{n}{u}")),
        "[0-9]{1,25}(ns|s|y)",
        "[0-9a-z .]{0,12}",
    ]
}

/// Durations for admin bodies: mostly valid and modest, plus zero, values too large for an
/// `Instant`, and near misses.
fn duration_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => ((1u64..10_000), select(&["ms", "s", "m", "h"][..])).prop_map(|(n, u)| Value::String(format!("{n}{u}"))),
        1 => select(&["7days", "168h", "604800s", "604801s", "8days"][..]).prop_map(|s| Value::String(s.into())),
        1 => Just(Value::String("0s".into())),
        1 => select(&["300000000000y", "584942417355y", "18446744073709551615s", "9223372036854775807s"][..])
            .prop_map(|s| Value::String(s.into())),
        2 => humantime_str().prop_map(Value::String),
        1 => any::<u32>().prop_map(Value::from),
    ]
}

fn small_int_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (1u64..=20).prop_map(Value::from),
        2 => (0u64..=30).prop_map(Value::from),
        1 => (0u64..=2_000).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
    ]
}

fn rate_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0.0f64..=1.2).prop_map(float_value),
        1 => select(&[0.0f64, 1.0, -0.0, 1e-300, 10.0][..]).prop_map(float_value),
        1 => any::<f64>().prop_map(float_value),
        1 => (0u64..3).prop_map(Value::from),
    ]
}

fn breaker_field(k: &'static str) -> BoxedStrategy<Value> {
    match k {
        "base_open" | "max_open" => duration_value().boxed(),
        "jitter" | "failure_rate" | "slow_call_rate" => rate_value().boxed(),
        _ => small_int_value().boxed(),
    }
}

/// Breaker-config-shaped objects.
fn breaker_object() -> impl Strategy<Value = Value> {
    object_of(BREAKER_KEYS, 0.4, breaker_field)
}

/// Policy-shaped objects (the body of `PUT /admin/capabilities/NAME`).
fn policy_object() -> impl Strategy<Value = Value> {
    fn warmup_field(k: &'static str) -> BoxedStrategy<Value> {
        match k {
            "timeout_seconds" => small_int_value().boxed(),
            "path" => prop_oneof!["[a-z/.?#-]{0,12}", ".{0,12}"].prop_map(Value::String).boxed(),
            _ => ".{0,16}".prop_map(Value::String).boxed(),
        }
    }
    fn field(k: &'static str) -> BoxedStrategy<Value> {
        match k {
            "profile" => prop_oneof![
                3 => select(&["low-latency", "per-frame", "chained"][..]).prop_map(|s| Value::String(s.into())),
                1 => "[a-z_-]{0,12}".prop_map(Value::String),
            ]
            .boxed(),
            "retry_timeout"
            | "per_try_timeout"
            | "slow_call_threshold"
            | "cold_start_threshold"
            | "cold_start_penalty" => duration_value().boxed(),
            "retry_budget_percent" => {
                prop_oneof![(-1.0f64..12.0).prop_map(float_value), any::<f64>().prop_map(float_value)].boxed()
            }
            "max_price_per_unit" | "pixels_per_unit" => {
                prop_oneof![(-3i64..1_000).prop_map(Value::from), any::<i64>().prop_map(Value::from)].boxed()
            }
            "response_content_type" => {
                prop_oneof!["[a-z]{0,8}/[a-z+.-]{0,10}(; charset=utf-8)?", ".{0,16}"].prop_map(Value::String).boxed()
            }
            "warmup" => object_of(WARMUP_KEYS, 0.8, warmup_field).boxed(),
            "breaker" => object_of(BREAKER_OVERRIDE_KEYS, 0.4, breaker_field).boxed(),
            _ => small_int_value().boxed(),
        }
    }
    object_of(POLICY_KEYS, 0.3, field)
}

fn json_values_are_carried_as_text(
    capability: String,
    timeout: u64,
    request: Value,
    parameters: Value,
) -> Result<(), TestCaseError> {
    let v = serde_json::json!({
        "capability": capability, "timeout_seconds": timeout, "request": request, "parameters": parameters,
    });
    let decoded = decode_client_header(Some(encode_client_header(&v).as_bytes()));
    prop_assert!(decoded.is_ok(), "refused: {:?}", decoded);
    let decoded = decoded.unwrap();
    prop_assert_eq!(&decoded.request, &request.to_string());
    prop_assert_eq!(&decoded.parameters, &parameters.to_string());
    Ok(())
}

/// A valid client job: (capability, timeout, request, parameters, id).
type ValidJob = (String, u64, Option<String>, Option<String>, Option<String>);

fn valid_job() -> impl Strategy<Value = ValidJob> {
    // What go-livepeer accepts: `request` decodes into `{"stream_id": string}`, `parameters`
    // into `JobParameters` (blank `parameters` is taken as `{}`, as the Python SDK needs).
    let request = prop_oneof![
        2 => select(&["{}", "null", "{\"a\":1}", "{\"stream_id\":null}"][..]).prop_map(String::from),
        3 => "[a-z0-9 ]{0,24}".prop_map(|t| serde_json::json!({"stream_id": t, "prompt": t}).to_string()),
    ];
    let parameters = prop_oneof![
        1 => Just(String::new()),
        1 => "[ \t\n]{1,3}",
        2 => select(&["{}", "null", "{\"a\":[1, 2]}", "{\"orchestrators\":{}}"][..]).prop_map(String::from),
        2 => url_like().prop_map(|u| serde_json::json!({"orchestrators": {"include": [u], "exclude": []}}).to_string()),
    ];
    (
        CAPABILITY_RE,
        1u64..=MAX_TIMEOUT_SECONDS,
        prop::option::of(request),
        prop::option::of(parameters),
        prop::option::of(".{0,24}"),
    )
}

fn valid_job_json((capability, timeout, request, parameters, id): &ValidJob) -> Value {
    let mut m = Map::new();
    m.insert("capability".into(), Value::String(capability.clone()));
    m.insert("timeout_seconds".into(), Value::from(*timeout));
    if let Some(r) = request {
        m.insert("request".into(), Value::String(r.clone()));
    }
    if let Some(p) = parameters {
        m.insert("parameters".into(), Value::String(p.clone()));
    }
    if let Some(i) = id {
        m.insert("id".into(), Value::String(i.clone()));
    }
    Value::Object(m)
}

/// URL-ish strings: mostly scheme://host[:port][/...] shapes with odd characters thrown in.
fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[ \t]?((https?|HTTP|ftp|file|ws)://)?[a-zA-Z0-9.:@%\\[\\]_-]{0,24}(:[0-9]{0,6})?(/[a-z./]{0,6})?([?#][a-z=]{0,4})?[ /]{0,2}",
        "(https?://)?\\[[0-9a-f:.]{0,20}\\](:[0-9]{1,5})?/?",
        "(https?://)?[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?/{0,3}",
    ]
}

// ---------------------------------------------------------------------------------------------
// The `Livepeer` header
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// Raw header bytes of any length up to 8 KiB (not necessarily UTF-8 or base64).
    #[test]
    fn header_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..8192)) {
        decode_and_check(Some(&bytes))?;
    }

    /// Base64 (any of the accepted alphabets/paddings) of arbitrary bytes, with optional
    /// surrounding whitespace.
    #[test]
    fn header_never_panics_on_base64_of_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..6144),
        engine in any::<u8>(),
        pad in select(&["", " ", "\t", "\r\n"][..]),
    ) {
        let h = format!("{pad}{}{pad}", engine_encode(engine, &bytes));
        decode_and_check(Some(h.as_bytes()))?;
    }

    /// Base64 of arbitrary JSON trees (keys mostly from the job header).
    #[test]
    fn header_never_panics_on_base64_of_arbitrary_json(v in arb_json(), engine in any::<u8>()) {
        decode_and_check(Some(encode_client_header(&v).as_bytes()))?;
        decode_and_check(Some(engine_encode(engine, v.to_string().as_bytes()).as_bytes()))?;
    }

    /// Base64 of job-shaped objects: many of these decode, so the invariants get exercised.
    #[test]
    fn decoded_jobs_satisfy_invariants(v in job_object()) {
        decode_and_check(Some(encode_client_header(&v).as_bytes()))?;
    }

    /// Valid jobs round-trip through the client codec; missing or blank `parameters` (and a
    /// missing `request`) decode as `{}`.
    #[test]
    fn valid_jobs_round_trip(job in valid_job(), engine in any::<u8>()) {
        let v = valid_job_json(&job);
        let (capability, timeout, request, parameters, id) = job;
        for h in [encode_client_header(&v), engine_encode(engine, v.to_string().as_bytes())] {
            let decoded = decode_client_header(Some(h.as_bytes()));
            prop_assert!(decoded.is_ok(), "valid job refused: {:?} for {}", decoded, v);
            let decoded = decoded.unwrap();
            prop_assert_eq!(decoded.capability.as_str(), capability.as_str());
            prop_assert_eq!(decoded.timeout_seconds, timeout);
            // A missing document, or one holding JSON `null`, is `{}`; so is blank `parameters`.
            let expected_request = request.as_deref().filter(|r| *r != "null").unwrap_or("{}");
            prop_assert_eq!(&decoded.request, expected_request);
            let expected_parameters =
                parameters.as_deref().filter(|p| !p.trim().is_empty() && *p != "null").unwrap_or("{}");
            prop_assert_eq!(decoded.parameters.as_str(), expected_parameters);
            prop_assert_eq!(decoded.id.as_str(), id.as_deref().unwrap_or(""));
            assert_job_invariants(&decoded)?;
        }
    }

    /// `request`/`parameters` sent as JSON documents rather than strings are carried as their
    /// exact JSON text, floats included (found: a float's last digit used to change, e.g.
    /// 1.8843825863965322 -> 1.884382586396532, while the header was re-serialised).
    #[test]
    fn json_values_are_accepted_where_strings_are_expected(
        capability in CAPABILITY_RE,
        timeout in 1u64..=MAX_TIMEOUT_SECONDS,
        request in arb_json(),
        parameters in arb_json(),
    ) {
        // Inside objects, as go-livepeer's documents must be.
        let request = serde_json::json!({"doc": request});
        let parameters = serde_json::json!({"doc": parameters});
        json_values_are_carried_as_text(capability, timeout, request, parameters)?;
    }

    /// A `request` or `parameters` that go-livepeer would refuse (not an object) is refused
    /// here too, as `InvalidJob`.
    #[test]
    fn documents_that_are_not_objects_are_refused(
        capability in CAPABILITY_RE,
        doc in arb_json().prop_filter("not an object", |v| !v.is_object() && !v.is_null() && !v.is_string()),
        which in any::<bool>(),
    ) {
        let field = if which { "request" } else { "parameters" };
        let v = serde_json::json!({"capability": capability, "timeout_seconds": 5, field: doc});
        let decoded = decode_client_header(Some(encode_client_header(&v).as_bytes()));
        prop_assert!(matches!(decoded, Err(HeaderError::InvalidJob(_))), "{:?} for {}", decoded, v);
    }

    /// The orchestrator-facing `JobRequest` round-trips through `decode_job_request`.
    #[test]
    fn job_request_round_trips(job in valid_job(), sender in ".{0,42}", sig in ".{0,132}") {
        let v = valid_job_json(&job);
        let decoded = decode_client_header(Some(encode_client_header(&v).as_bytes())).unwrap();
        let req = JobRequest::for_job(&decoded, sender.clone(), sig.clone());
        let back = decode_job_request(&req.encode());
        prop_assert_eq!(back.as_ref(), Ok(&req));
        let back = back.unwrap();
        prop_assert_eq!(back.capability.as_str(), decoded.capability.as_str());
        prop_assert_eq!(back.timeout_seconds, decoded.timeout_seconds);
        prop_assert_eq!(&back.request, &decoded.request);
        prop_assert_eq!(&back.parameters, &decoded.parameters);
        prop_assert_eq!(&back.id, &decoded.id);
        prop_assert_eq!((&back.sender, &back.sig), (&sender, &sig));
        prop_assert_eq!(back.capability_url.as_str(), "");
    }
}

// ---------------------------------------------------------------------------------------------
// Admin JSON bodies
// ---------------------------------------------------------------------------------------------

/// Every duration of a validated policy's effective knobs except `cold_start_penalty` (see
/// the separate property below).
fn check_validated_policy(p: &CapabilityPolicy) -> Result<(), TestCaseError> {
    let e = p.effective();
    prop_assert!((1..=20).contains(&e.max_attempts), "max_attempts {} for {:?}", e.max_attempts, p);
    for (name, d) in [
        ("retry_timeout", e.retry_timeout),
        ("per_try_timeout", e.per_try_timeout),
        ("slow_call_threshold", e.slow_call_threshold),
        ("cold_start_threshold", e.cold_start_threshold),
        ("breaker.base_open", e.breaker.base_open),
        ("breaker.max_open", e.breaker.max_open),
    ] {
        prop_assert!(!d.is_zero(), "{} is zero for {:?}", name, p);
    }
    prop_assert!(e.cold_start_concurrency >= 1);
    prop_assert!(e.pixels_per_unit >= 1);
    prop_assert!(e.max_price_per_unit.is_none_or(|c| c >= 0));
    prop_assert!((0.0..=10.0).contains(&e.retry_budget_percent));
    prop_assert_eq!(e.breaker.validate(), Ok(()));
    if let Some(w) = &e.warmup {
        prop_assert!((1..=MAX_TIMEOUT_SECONDS).contains(&w.timeout_seconds));
    }
    // What `GET /admin/capabilities` shows can be sent back unchanged.
    let json = serde_json::to_value(p).unwrap();
    let back: Result<CapabilityPolicy, _> = serde_json::from_value(json.clone());
    prop_assert!(back.is_ok(), "serialised policy {} does not deserialise: {:?}", json, back);
    prop_assert_eq!(&back.unwrap(), p);
    Ok(())
}

/// Deserialises `v` as a policy; validates and computes effective knobs when that works.
fn policy_never_panics(v: Value) -> Result<(), TestCaseError> {
    if let Ok(p) = serde_json::from_value::<CapabilityPolicy>(v) {
        let valid = p.validate();
        let _ = p.effective();
        if valid.is_ok() {
            check_validated_policy(&p)?;
        }
    }
    Ok(())
}

fn breaker_config_never_panics(v: Value) -> Result<(), TestCaseError> {
    if let Ok(c) = serde_json::from_value::<BreakerConfig>(v) {
        if c.validate().is_ok() {
            prop_assert!(c.consecutive_failures >= 1 && c.half_open_permits >= 1);
            prop_assert!(!c.base_open.is_zero() && c.max_open >= c.base_open);
            prop_assert!((0.0..=1.0).contains(&c.jitter));
            prop_assert!((1..=1000).contains(&c.window) && (1..=c.window).contains(&c.min_calls));
            prop_assert!(c.failure_rate > 0.0 && c.failure_rate <= 1.0);
            prop_assert!(c.slow_call_rate > 0.0 && c.slow_call_rate <= 1.0);
            prop_assert!((1..=1000).contains(&c.short_pool_permits));
        }
    }
    Ok(())
}

/// Drives a breaker with a validated config through open, then failed half-open trials up
/// to the top backoff level, at the extremes of jitter, as the pair actor does.
fn drive_breaker(c: BreakerConfig) {
    let now = Instant::now();
    for u in [0.0, 0.5, 0.999_999] {
        let mut b = Breaker::new(c.clone());
        let _ = b.trip(now, u);
        for _ in 0..32 {
            let _ = b.backoff();
            let Some(until) = b.open_until() else { break };
            let pool = if u < 0.5 { Pool::Short } else { Pool::Ample };
            let _ = b.open_until_for(Pool::Short);
            let _ = b.admit(until, pool);
            let _ = b.on_failure(until, u);
        }
    }
}

/// Durations spread log-uniformly over the whole `Duration` range (seconds from 2^0 to
/// 2^64-1, biased to the top and to values under 2^20 s), plus sub-second ones.
fn log_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => prop_oneof![3 => 0u32..64, 2 => 0u32..20, 1 => Just(63u32)]
            .prop_flat_map(|e| (1u64 << e)..=(u64::MAX >> (63 - e)))
            .prop_map(Duration::from_secs),
        1 => (1u64..1_000_000_000).prop_map(Duration::from_nanos),
    ]
}

/// Breaker configs built directly (not through JSON), over the whole range of durations.
fn breaker_config() -> impl Strategy<Value = BreakerConfig> {
    (1u32..10, log_duration(), log_duration(), 1u32..4, 0.0f64..=1.0, 1u32..=1000, 0.01f64..=1.0, 0.01f64..=1.0)
        .prop_flat_map(|(n, a, b, permits, jitter, window, fr, sr)| {
            let short_permits = permits + n % 3;
            (1..=window).prop_map(move |min_calls| BreakerConfig {
                consecutive_failures: n,
                base_open: a.min(b),
                max_open: a.max(b),
                half_open_permits: permits,
                jitter,
                window,
                min_calls,
                failure_rate: fr,
                slow_call_rate: sr,
                short_pool_permits: short_permits,
            })
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn policy_body_arbitrary_json_never_panics(v in json_with_keys(POLICY_KEYS)) {
        policy_never_panics(v)?;
    }

    #[test]
    fn policy_body_shaped_json_never_panics_and_validated_policies_are_sane(v in policy_object()) {
        policy_never_panics(v)?;
    }

    #[test]
    fn breaker_config_arbitrary_json_never_panics(v in json_with_keys(BREAKER_KEYS)) {
        breaker_config_never_panics(v)?;
    }

    #[test]
    fn breaker_config_shaped_json_never_panics(v in breaker_object()) {
        breaker_config_never_panics(v)?;
    }

    /// What a validated config is used for: the pair actor runs a `Breaker` with it and adds
    /// its open time to `Instant::now()` (found: max_open >= ~2^63 s used to validate, and
    /// `Breaker::open` then panicked with "overflow when adding duration to instant").
    #[test]
    fn validated_breaker_configs_drive_a_breaker_without_panicking(c in breaker_config()) {
        if c.validate().is_ok() {
            drive_breaker(c);
        }
    }

    /// Every duration of a validated policy can be added to `Instant::now()` (the pair actor
    /// does `now + cold_start_penalty`, the breaker `now + open time`; found: a
    /// cold_start_penalty of "300000000000y" used to validate).
    #[test]
    fn validated_policy_durations_fit_in_an_instant(v in policy_object()) {
        if let Ok(p) = serde_json::from_value::<CapabilityPolicy>(v) {
            if p.validate().is_ok() {
                let e = p.effective();
                let now = Instant::now();
                for (name, d) in [
                    ("retry_timeout", e.retry_timeout),
                    ("per_try_timeout", e.per_try_timeout),
                    ("slow_call_threshold", e.slow_call_threshold),
                    ("cold_start_threshold", e.cold_start_threshold),
                    ("cold_start_penalty", e.cold_start_penalty),
                    ("breaker.max_open", e.breaker.max_open),
                ] {
                    prop_assert!(now.checked_add(d).is_some(), "{} = {:?} overflows an Instant for {:?}", name, d, p);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Orchestrator URLs
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn normalize_url_never_panics_and_yields_bare_origins(raw in url_like()) {
        if let Ok(url) = normalize_url(&raw) {
            prop_assert!(url.starts_with("http://") || url.starts_with("https://"), "{:?} -> {:?}", raw, url);
            prop_assert!(!url.ends_with('/'), "{:?} -> {:?}", raw, url);
            prop_assert!(url.len() > "https://".len() || url.starts_with("http://"), "{:?} -> {:?}", raw, url);
            // Normalising is idempotent: a stored URL normalises to itself.
            let again = normalize_url(&url);
            prop_assert_eq!(again.as_deref(), Ok(url.as_str()), "from {:?}", raw);
        }
    }

    #[test]
    fn normalize_url_never_panics_on_arbitrary_strings(raw in any::<String>()) {
        if let Ok(url) = normalize_url(&raw) {
            prop_assert!(url.starts_with("http://") || url.starts_with("https://"), "{:?} -> {:?}", raw, url);
            prop_assert!(!url.ends_with('/'), "{:?} -> {:?}", raw, url);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The minimal inputs the properties above found, kept as regression tests.
// ---------------------------------------------------------------------------------------------

/// A zero cold-start penalty is the documented way to turn deprioritisation off.
#[test]
fn zero_cold_start_penalty_turns_deprioritisation_off() {
    let p: CapabilityPolicy = serde_json::from_value(serde_json::json!({"cold_start_penalty": "0s"})).unwrap();
    assert!(p.validate().is_ok());
    assert!(p.effective().cold_start_penalty.is_zero());
}

/// Used to validate, then panicked in `Breaker::open` (`Instant + Duration` overflow). Now
/// refused; and a breaker built with it anyway does not panic.
#[test]
fn huge_breaker_durations_are_refused_and_harmless() {
    let c: BreakerConfig = serde_json::from_value(serde_json::json!({
        "base_open": "300000000000y", "max_open": "300000000000y", "jitter": 0.0
    }))
    .unwrap();
    assert!(c.validate().is_err());
    drive_breaker(c);
}

/// Used to validate, then `now + cold_start_penalty` (pair.rs) panicked.
#[test]
fn huge_policy_durations_are_refused() {
    let p: CapabilityPolicy =
        serde_json::from_value(serde_json::json!({"cold_start_penalty": "300000000000y"})).unwrap();
    assert!(p.validate().is_err());
}

/// Used to come out as `{"x":1.884382586396532}`.
#[test]
fn floats_in_object_documents_are_kept_exactly() {
    let header = STANDARD.encode(r#"{"capability":"A","timeout_seconds":1,"request":{"x":1.8843825863965322}}"#);
    let job = decode_client_header(Some(header.as_bytes())).unwrap();
    assert_eq!(job.request, r#"{"x":1.8843825863965322}"#);
}

#[test]
fn zero_duration_strings_are_refused_where_validated() {
    for field in ["retry_timeout", "per_try_timeout", "slow_call_threshold", "cold_start_threshold"] {
        let p: CapabilityPolicy = serde_json::from_value(serde_json::json!({ field: "0s" })).unwrap();
        assert!(p.validate().is_err(), "{field} = 0s validated");
    }
}
