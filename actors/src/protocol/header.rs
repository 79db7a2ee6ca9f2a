//! Codec for the `Livepeer` job header: decoding what clients send and encoding what the
//! gateway sends on to orchestrators.
//!
//! Clients (go-livepeer's, the `livepeer-gateway` Python SDK) send base64 (standard alphabet)
//! of JSON `{"id","request","parameters","capability","timeout_seconds",...}` where `request`
//! and `parameters` are themselves JSON documents carried as strings. We are lenient where
//! go-livepeer's clients differ (missing or empty `parameters` means `{}`, JSON objects are
//! accepted where strings are expected, padding is optional) and strict where the orchestrator
//! would refuse anyway (a missing or zero `timeout_seconds`, a missing capability).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::capability::{Capability, CapabilityError};

mod params;

pub use params::{check_request, OrchestratorFilter, ParamsError};

/// Longest accepted `timeout_seconds` (one day). Longer values are almost certainly a unit
/// mistake (milliseconds) and would pin a pair's in-flight slot for that long.
pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// Why a `Livepeer` header was refused. Each variant maps to a stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header is absent or empty.
    #[error("the Livepeer header is missing; send base64 of the job JSON")]
    Missing,
    /// Not valid base64, not UTF-8 JSON, or a field has the wrong type.
    #[error("the Livepeer header is not base64 of a job JSON object: {0}")]
    Malformed(String),
    /// `timeout_seconds` is absent or zero.
    #[error("timeout_seconds is required and must be a positive number of seconds")]
    MissingTimeout,
    /// `timeout_seconds` is over [`MAX_TIMEOUT_SECONDS`].
    #[error("timeout_seconds {0} is over the limit of {MAX_TIMEOUT_SECONDS}")]
    TimeoutTooLong(u64),
    /// `capability` is absent.
    #[error("the job names no capability")]
    MissingCapability,
    /// `capability` is not an acceptable name.
    #[error("invalid capability: {0}")]
    InvalidCapability(#[from] CapabilityError),
    /// `request` or `parameters` is not what go-livepeer's orchestrator accepts.
    #[error("{0}")]
    InvalidJob(#[from] ParamsError),
}

/// A job as the client described it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientJob {
    /// The capability to route by.
    pub capability: Capability,
    /// The client's job id, if it sent one (echoed to the orchestrator).
    pub id: String,
    /// The `request` JSON document, as a string (forwarded unchanged).
    pub request: String,
    /// The `parameters` JSON document, as a string; `{}` when the client sent none.
    pub parameters: String,
    /// Seconds the orchestrator may spend on the job.
    pub timeout_seconds: u64,
    /// Which orchestrators the job may go to (`parameters.orchestrators`).
    pub orchestrators: OrchestratorFilter,
}

/// A JSON value that go-livepeer carries as a string holding JSON. Clients written in other
/// languages sometimes send the document itself; both are accepted. The document is kept as
/// the exact text the client sent (a re-serialisation could change a float's last digit).
fn json_text(raw: &serde_json::value::RawValue) -> Result<String, HeaderError> {
    let text = raw.get();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|e| HeaderError::Malformed(e.to_string()))
    } else {
        Ok(text.to_string())
    }
}

/// The wire shape clients send. Unknown fields (`sender`, `sig`, `capability_url`,
/// `OrchSearchTimeout`, ...) are ignored, as go-livepeer's gateway ignores them.
#[derive(Deserialize)]
struct WireClientJob {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    request: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    parameters: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    capability: Option<String>,
    #[serde(default)]
    timeout_seconds: Option<serde_json::Number>,
}

/// Decodes base64 leniently: standard or URL-safe alphabet, padded or not.
fn decode_base64(raw: &str) -> Result<Vec<u8>, HeaderError> {
    let raw = raw.trim();
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(raw).ok())
        .ok_or_else(|| HeaderError::Malformed("not valid base64".into()))
}

/// Decodes and validates the client's `Livepeer` header value.
pub fn decode_client_header(value: Option<&[u8]>) -> Result<ClientJob, HeaderError> {
    let raw = match value {
        Some(v) if !v.iter().all(u8::is_ascii_whitespace) => v,
        _ => return Err(HeaderError::Missing),
    };
    let raw = std::str::from_utf8(raw).map_err(|_| HeaderError::Malformed("header is not ASCII".into()))?;
    let json = decode_base64(raw)?;
    let wire: WireClientJob = serde_json::from_slice(&json).map_err(|e| HeaderError::Malformed(e.to_string()))?;

    let timeout_seconds = match wire.timeout_seconds {
        None => return Err(HeaderError::MissingTimeout),
        Some(n) => match n.as_u64() {
            Some(0) => return Err(HeaderError::MissingTimeout),
            Some(t) if t > MAX_TIMEOUT_SECONDS => return Err(HeaderError::TimeoutTooLong(t)),
            Some(t) => t,
            None => {
                return Err(HeaderError::Malformed(format!("timeout_seconds must be a positive whole number, got {n}")))
            }
        },
    };
    let capability = match wire.capability.as_deref() {
        None | Some("") => return Err(HeaderError::MissingCapability),
        Some(c) => Capability::new(c)?,
    };
    let parameters = wire
        .parameters
        .map(|r| json_text(&r))
        .transpose()?
        .filter(|p| !p.trim().is_empty() && p != "null")
        .unwrap_or_else(|| "{}".to_string());
    let request =
        wire.request.map(|r| json_text(&r)).transpose()?.filter(|r| r != "null").unwrap_or_else(|| "{}".to_string());
    params::check_request(&request)?;
    let orchestrators = params::parse_parameters(&parameters)?;
    Ok(ClientJob { capability, id: wire.id.unwrap_or_default(), request, parameters, timeout_seconds, orchestrators })
}

/// The job header the gateway sends to an orchestrator (go-livepeer `JobRequest`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRequest {
    /// Client job id (may be empty).
    pub id: String,
    /// The `request` JSON document as a string.
    pub request: String,
    /// The `parameters` JSON document as a string.
    pub parameters: String,
    /// Capability name.
    pub capability: String,
    /// Unused by the orchestrator; sent empty as go-livepeer does.
    pub capability_url: String,
    /// The gateway's address (empty offchain).
    pub sender: String,
    /// Signature over `request + parameters` (empty offchain).
    pub sig: String,
    /// Seconds the orchestrator may spend on the job.
    pub timeout_seconds: u64,
}

impl JobRequest {
    /// Builds the orchestrator-facing header for `job`, signed by `sender`/`sig`.
    pub fn for_job(job: &ClientJob, sender: String, sig: String) -> Self {
        Self {
            id: job.id.clone(),
            request: job.request.clone(),
            parameters: job.parameters.clone(),
            capability: job.capability.to_string(),
            capability_url: String::new(),
            sender,
            sig,
            timeout_seconds: job.timeout_seconds,
        }
    }

    /// Base64 (standard, padded) of the JSON encoding: the `Livepeer` header value.
    pub fn encode(&self) -> String {
        encode_job_header(&JobRequestRef {
            id: &self.id,
            request: &self.request,
            parameters: &self.parameters,
            capability: &self.capability,
            capability_url: &self.capability_url,
            sender: &self.sender,
            sig: &self.sig,
            timeout_seconds: self.timeout_seconds,
        })
    }
}

/// [`JobRequest`] borrowing its strings: the router encodes one per job, and building the
/// owned struct first copied five strings for nothing.
#[derive(Serialize)]
struct JobRequestRef<'a> {
    id: &'a str,
    request: &'a str,
    parameters: &'a str,
    capability: &'a str,
    capability_url: &'a str,
    sender: &'a str,
    sig: &'a str,
    timeout_seconds: u64,
}

fn encode_job_header(r: &JobRequestRef<'_>) -> String {
    // Sized for the fields plus the JSON around them, so the buffer is allocated once.
    let fields = [r.id, r.request, r.parameters, r.capability, r.capability_url, r.sender, r.sig]
        .iter()
        .map(|f| f.len())
        .sum::<usize>();
    let mut json = Vec::with_capacity(fields + 160);
    // Serialising a struct of strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut json, r);
    STANDARD.encode(json)
}

/// The `Livepeer` header value for `job`, signed by `sender`/`sig`: what
/// `JobRequest::for_job(job, sender, sig).encode()` gives, without the copies.
pub(crate) fn encode_job_request(job: &ClientJob, sender: &str, sig: &str) -> String {
    encode_job_header(&JobRequestRef {
        id: &job.id,
        request: &job.request,
        parameters: &job.parameters,
        capability: job.capability.as_str(),
        capability_url: "",
        sender,
        sig,
        timeout_seconds: job.timeout_seconds,
    })
}

/// Encodes a client-side header value (used by tests, the simulator's self-check and the demo).
pub fn encode_client_header(json: &serde_json::Value) -> String {
    STANDARD.encode(json.to_string())
}

/// Decodes a header value the gateway sent (used by the simulator, as an orchestrator would).
pub fn decode_job_request(value: &str) -> Result<JobRequest, HeaderError> {
    let json = decode_base64(value)?;
    serde_json::from_slice(&json).map_err(|e| HeaderError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn borrowed_encoding_matches_the_owned_one() {
        let job = decode(json!({"id": "j", "capability": "depth", "request": "{\"a\":1}", "timeout_seconds": 5}))
            .expect("valid");
        let owned = JobRequest::for_job(&job, "0xabc".into(), "0xsig".into()).encode();
        assert_eq!(encode_job_request(&job, "0xabc", "0xsig"), owned);
        assert_eq!(decode_job_request(&owned).expect("decodes").request, "{\"a\":1}");
    }

    fn decode(v: serde_json::Value) -> Result<ClientJob, HeaderError> {
        let h = encode_client_header(&v);
        decode_client_header(Some(h.as_bytes()))
    }

    #[test]
    fn go_livepeer_shape_decodes() {
        let job = decode(json!({"id":"j1","request":"{\"a\":1}","parameters":"{}","capability":"depth",
            "capability_url":"","sender":"0xabc","sig":"0x00","timeout_seconds":30,
            "OrchSearchTimeout":1000000000}))
        .expect("valid");
        assert_eq!(job.capability.as_str(), "depth");
        assert_eq!(job.id, "j1");
        assert_eq!(job.request, "{\"a\":1}");
        assert_eq!(job.timeout_seconds, 30);
    }

    #[test]
    fn missing_or_empty_parameters_mean_empty_object() {
        let a = decode(json!({"capability":"d","request":"{}","timeout_seconds":5})).expect("valid");
        assert_eq!(a.parameters, "{}");
        let b = decode(json!({"capability":"d","request":"{}","parameters":"","timeout_seconds":5})).expect("valid");
        assert_eq!(b.parameters, "{}");
    }

    #[test]
    fn objects_are_accepted_where_strings_are_expected() {
        let j = decode(json!({"capability":"d","request":{"x":1},"parameters":{"p":true},"timeout_seconds":5}))
            .expect("valid");
        assert_eq!(j.request, "{\"x\":1}");
        assert_eq!(j.parameters, "{\"p\":true}");
    }

    #[test]
    fn timeout_is_required_positive_and_bounded() {
        assert_eq!(decode(json!({"capability":"d"})), Err(HeaderError::MissingTimeout));
        assert_eq!(decode(json!({"capability":"d","timeout_seconds":0})), Err(HeaderError::MissingTimeout));
        assert!(matches!(decode(json!({"capability":"d","timeout_seconds":-3})), Err(HeaderError::Malformed(_))));
        assert!(matches!(decode(json!({"capability":"d","timeout_seconds":1.5})), Err(HeaderError::Malformed(_))));
        assert_eq!(decode(json!({"capability":"d","timeout_seconds":86401})), Err(HeaderError::TimeoutTooLong(86401)));
    }

    #[test]
    fn capability_is_required_and_validated() {
        assert_eq!(decode(json!({"timeout_seconds":5})), Err(HeaderError::MissingCapability));
        assert_eq!(decode(json!({"capability":"","timeout_seconds":5})), Err(HeaderError::MissingCapability));
        assert!(matches!(
            decode(json!({"capability":"a b","timeout_seconds":5})),
            Err(HeaderError::InvalidCapability(_))
        ));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert_eq!(decode_client_header(None), Err(HeaderError::Missing));
        assert_eq!(decode_client_header(Some(b"  ")), Err(HeaderError::Missing));
        for raw in [&b"%%%"[..], b"bm90IGpzb24=", b"WzEsMl0=", &[0xff, 0xfe][..]] {
            assert!(matches!(decode_client_header(Some(raw)), Err(HeaderError::Malformed(_))), "{raw:?}");
        }
        // Wrong type for a field.
        assert!(matches!(decode(json!({"capability":5,"timeout_seconds":5})), Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn object_documents_are_kept_byte_for_byte() {
        let h = STANDARD.encode(
            r#"{"capability":"A","timeout_seconds":1,"request":{"x":1.8843825863965322},"parameters":{"a": [1, 2]}}"#,
        );
        let job = decode_client_header(Some(h.as_bytes())).expect("valid");
        assert_eq!(job.request, r#"{"x":1.8843825863965322}"#);
        assert_eq!(job.parameters, r#"{"a": [1, 2]}"#);
    }

    #[test]
    fn request_and_parameters_are_checked_as_go_livepeer_does() {
        for request in [json!(""), json!("abc"), json!([1]), json!({"stream_id": 5}), json!("[1]")] {
            let r = decode(json!({"capability":"d","request":request,"timeout_seconds":5}));
            assert!(matches!(r, Err(HeaderError::InvalidJob(ParamsError::Request(_)))), "{request}");
        }
        let r = decode(json!({"capability":"d","parameters":"[1]","timeout_seconds":5}));
        assert!(matches!(r, Err(HeaderError::InvalidJob(ParamsError::Parameters(_)))));
        let job = decode(json!({"capability":"d","parameters":{"orchestrators":{"exclude":["1.2.3.4:8935"]}},
            "timeout_seconds":5}))
        .expect("valid");
        assert_eq!(job.orchestrators.exclude, vec!["https://1.2.3.4:8935".to_string()]);
    }

    #[test]
    fn unpadded_and_url_safe_base64_are_accepted() {
        let h = STANDARD_NO_PAD.encode(json!({"capability":"d","timeout_seconds":1}).to_string());
        assert!(decode_client_header(Some(h.as_bytes())).is_ok());
    }

    #[test]
    fn job_request_round_trips() {
        let job = decode(json!({"id":"x","capability":"depth","request":"{}","timeout_seconds":9})).expect("valid");
        let req = JobRequest::for_job(&job, String::new(), String::new());
        let back = decode_job_request(&req.encode()).expect("round trip");
        assert_eq!(back, req);
        assert_eq!(back.parameters, "{}");
        assert_eq!(back.sig, "");
    }
}
