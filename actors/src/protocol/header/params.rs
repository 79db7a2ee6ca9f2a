//! The two JSON documents a job carries as strings, checked at the edge as go-livepeer's
//! gateway checks them (`job_gateway.go:setupGatewayJob`): `request` must decode into
//! `{"stream_id": string}` and `parameters` into `JobParameters`
//! (`{"orchestrators": {"include": [..], "exclude": [..]}}`). A job that fails either is
//! answered 400 before any orchestrator is contacted: the orchestrator would refuse it only
//! after reserving a capacity slot it never frees.
//!
//! Also the per-job orchestrator filter that `parameters.orchestrators` carries.

use serde_json::{Map, Value};

use crate::orchestrator::normalize_url;

/// Why a job's `request` or `parameters` was refused, in go-livepeer's words (its gateway
/// answers `Unable to unmarshal job request err=...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// `request` is not `{"stream_id": string}` JSON.
    #[error("Unable to unmarshal job request err={0}; `request` must be a JSON object (its stream_id, if any, a string); nothing was sent")]
    Request(String),
    /// `parameters` is not `JobParameters` JSON.
    #[error("Unable to unmarshal job parameters err={0}; `parameters` must be a JSON object such as {{\"orchestrators\":{{\"include\":[\"https://host:port\"]}}}}; nothing was sent")]
    Parameters(String),
}

/// The JSON type name go's decoder would report.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `doc` as go's decoder reads it into a struct: an object, or `null` (no fields).
fn object(doc: &str, of: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(doc).map_err(|e| e.to_string())? {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(format!("json: cannot unmarshal {} into Go value of type {of}", kind(&other))),
    }
}

/// Field `name` of `m`, which must be `null` or of the type `check` accepts (go's decoder
/// leaves a `null` field at its zero value). Go matches field names case-insensitively.
fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

fn wrong(name: &str, v: &Value, want: &str) -> String {
    format!("json: cannot unmarshal {} into Go struct field .{name} of type {want}", kind(v))
}

/// Checks a job's `request` document (go-livepeer's `JobRequestDetails`).
pub fn check_request(request: &str) -> Result<(), ParamsError> {
    let m = object(request, "byoc.JobRequestDetails").map_err(ParamsError::Request)?;
    match field(&m, "stream_id") {
        Some(v) if !v.is_string() => Err(ParamsError::Request(wrong("stream_id", v, "string"))),
        _ => Ok(()),
    }
}

/// Checks a job's `parameters` document (go-livepeer's `JobParameters`) and returns the
/// orchestrator filter it carries.
pub(crate) fn parse_parameters(parameters: &str) -> Result<OrchestratorFilter, ParamsError> {
    let bad = ParamsError::Parameters;
    let m = object(parameters, "byoc.JobParameters").map_err(bad)?;
    for flag in ["enable_video_ingress", "enable_video_egress", "enable_data_output"] {
        if let Some(v) = field(&m, flag).filter(|v| !v.is_boolean()) {
            return Err(bad(wrong(flag, v, "bool")));
        }
    }
    let Some(lists) = field(&m, "orchestrators") else {
        return Ok(OrchestratorFilter::default());
    };
    let Value::Object(lists) = lists else {
        return Err(bad(wrong("orchestrators", lists, "byoc.JobOrchestratorsFilter")));
    };
    let list = |name: &str| -> Result<Vec<String>, ParamsError> {
        match field(lists, name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(|| bad(wrong(name, i, "string"))))
                .collect(),
            Some(v) => Err(bad(wrong(name, v, "[]string"))),
        }
    };
    Ok(OrchestratorFilter::new(list("include")?, list("exclude")?))
}

/// Which orchestrators one job may go to (`parameters.orchestrators`). An entry names an
/// orchestrator by its URL, matched as go-livepeer matches it (the exact string, e.g.
/// `https://1.2.3.4:8935`; also a bare `host:port` or a trailing `/`, normalised as
/// orchestrator addresses are), or by the gateway's orchestrator id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrchestratorFilter {
    /// When not empty, only these orchestrators.
    pub include: Vec<String>,
    /// Never these.
    pub exclude: Vec<String>,
}

impl OrchestratorFilter {
    fn new(include: Vec<String>, exclude: Vec<String>) -> Self {
        let norm = |v: Vec<String>| -> Vec<String> {
            v.into_iter().map(|e| normalize_url(&e).ok().filter(|_| e.contains(':')).unwrap_or(e)).collect()
        };
        Self { include: norm(include), exclude: norm(exclude) }
    }

    /// Whether the filter lets every orchestrator through.
    pub(crate) fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether the job may go to the orchestrator with this id and URL.
    pub(crate) fn allows(&self, id: &str, url: &str) -> bool {
        let named = |list: &[String]| list.iter().any(|e| e == url || e == id);
        (self.include.is_empty() || named(&self.include)) && !named(&self.exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_must_be_an_object_with_a_string_stream_id() {
        for ok in ["{}", "null", r#"{"stream_id":"s"}"#, r#"{"stream_id":null,"other":[1]}"#, r#"{"prompt":"x"}"#] {
            assert_eq!(check_request(ok), Ok(()), "{ok}");
        }
        for bad in ["", "abc", "[1]", "[]", r#"{"stream_id":5}"#, "\"text\"", "{"] {
            assert!(matches!(check_request(bad), Err(ParamsError::Request(_))), "{bad}");
        }
    }

    #[test]
    fn parameters_must_be_job_parameters() {
        assert_eq!(parse_parameters("{}"), Ok(OrchestratorFilter::default()));
        assert_eq!(parse_parameters("null"), Ok(OrchestratorFilter::default()));
        assert_eq!(parse_parameters(r#"{"seed":1,"orchestrators":{}}"#), Ok(OrchestratorFilter::default()));
        for bad in [
            "[1]",
            "[]",
            r#"{"orchestrators":[]}"#,
            "5",
            r#"{"orchestrators":"x"}"#,
            r#"{"orchestrators":{"include":"x"}}"#,
            r#"{"orchestrators":{"exclude":[1]}}"#,
            r#"{"enable_video_ingress":"yes"}"#,
        ] {
            assert!(matches!(parse_parameters(bad), Err(ParamsError::Parameters(_))), "{bad}");
        }
    }

    #[test]
    fn filter_matches_urls_as_go_livepeer_and_ids() {
        let f = parse_parameters(r#"{"orchestrators":{"include":["https://1.2.3.4:8935","orch-2","5.6.7.8:9/"]}}"#)
            .expect("valid");
        assert!(f.allows("orch-1", "https://1.2.3.4:8935"));
        assert!(f.allows("orch-2", "https://9.9.9.9:1"));
        assert!(f.allows("orch-3", "https://5.6.7.8:9"));
        assert!(!f.allows("orch-4", "https://1.2.3.4:8936"));
        let f = parse_parameters(r#"{"orchestrators":{"exclude":["https://1.2.3.4:8935"]}}"#).expect("valid");
        assert!(!f.allows("orch-1", "https://1.2.3.4:8935"));
        assert!(f.allows("orch-2", "https://1.2.3.4:8936"));
        assert!(OrchestratorFilter::default().allows("x", "y"));
        assert!(OrchestratorFilter::default().is_empty());
    }
}
