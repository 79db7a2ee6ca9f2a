//! What a client's `POST /process/stream/start` asks for, checked as go-livepeer's gateway checks
//! it (`stream_gateway.go:setupStream`), and the URLs it is answered with (`StreamUrls`). Pure:
//! no I/O, unit-tested.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::StreamError;

/// Longest stream id (it is a path segment of every stream URL).
pub const MAX_STREAM_ID: usize = 128;

/// The `StartRequest` body (`byoc/types.go`).
#[derive(Debug, Deserialize)]
struct WireStart {
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(default)]
    rtmp_output: Option<Outputs>,
    #[serde(default)]
    stream_id: Option<String>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
}

/// `rtmp_output`: one URL (go-livepeer's form) or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Outputs {
    One(String),
    Many(Vec<String>),
}

/// A start request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    /// The stream's id: `stream_id` (or a random one), prefixed `{stream_name}-` when a name is
    /// given.
    pub stream_id: String,
    /// The client's `rtmp_output` destinations (`rtmp://` or `rtmps://` URLs), at most
    /// [`MAX_OUTPUTS`](super::edges::MAX_OUTPUTS).
    pub rtmp_outputs: Vec<String>,
    /// The pipeline's parameters (a JSON object), if any.
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The media a stream was asked for (`parameters.enable_*`, read from the job header's
/// `parameters` as go-livepeer's gateway and orchestrator both read them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Features {
    /// `enable_video_ingress`: the client sends media (here: to the gateway's trickle ingress).
    pub ingress: bool,
    /// `enable_video_egress`: the client receives media.
    pub egress: bool,
    /// `enable_data_output`: the runner's data lines, at `/data`.
    pub data: bool,
}

impl Features {
    /// The flags of a job's `parameters` document (already checked to be `JobParameters`).
    pub fn of(parameters: &str) -> Self {
        let v: serde_json::Value = serde_json::from_str(parameters).unwrap_or_default();
        let flag = |name: &str| {
            v.as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .and_then(|(_, v)| v.as_bool())
                .unwrap_or(false)
        };
        Self {
            ingress: flag("enable_video_ingress"),
            egress: flag("enable_video_egress"),
            data: flag("enable_data_output"),
        }
    }
}

/// Parses and checks a start body; `random_id` names a stream that asked for no id.
pub fn parse_start(body: &[u8], random_id: impl FnOnce() -> String) -> Result<StartRequest, StreamError> {
    let wire: WireStart = serde_json::from_slice(body).map_err(|e| StreamError::InvalidBody(e.to_string()))?;
    let name = wire.stream_name.unwrap_or_default();
    if name.ends_with("-out") {
        // go-livepeer's convention for its own outputs; its gateway then crashes the request.
        return Err(StreamError::InvalidStreamId(format!(
            "stream_name '{name}' ends in '-out', which go-livepeer reserves for stream outputs"
        )));
    }
    let params = parse_params(wire.params.as_deref())?;
    let id = wire.stream_id.filter(|s| !s.is_empty()).unwrap_or_else(random_id);
    let stream_id = if name.is_empty() { id } else { format!("{name}-{id}") };
    check_stream_id(&stream_id)?;
    let rtmp_outputs = parse_outputs(wire.rtmp_output)?;
    Ok(StartRequest { stream_id, rtmp_outputs, params })
}

/// Checks the RTMP destinations: each an `rtmp://` or `rtmps://` URL with a host; blanks are none.
fn parse_outputs(wire: Option<Outputs>) -> Result<Vec<String>, StreamError> {
    let list = match wire {
        None => Vec::new(),
        Some(Outputs::One(s)) => vec![s],
        Some(Outputs::Many(v)) => v,
    };
    let list: Vec<String> = list.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if list.len() > super::edges::MAX_OUTPUTS {
        return Err(StreamError::InvalidOutput(format!(
            "{} destinations, at most {} are served",
            list.len(),
            super::edges::MAX_OUTPUTS
        )));
    }
    for o in &list {
        let ok = url::Url::parse(o)
            .is_ok_and(|u| matches!(u.scheme(), "rtmp" | "rtmps") && u.host_str().is_some_and(|h| !h.is_empty()));
        if !ok {
            return Err(StreamError::InvalidOutput(format!(
                "'{}' is not an rtmp:// or rtmps:// URL with a host",
                super::edges::redact(o)
            )));
        }
    }
    Ok(list)
}

/// go-livepeer carries `params` as a string holding JSON; an object itself is accepted too. An
/// empty string or `null` means none.
fn parse_params(raw: Option<&RawValue>) -> Result<Option<serde_json::Map<String, serde_json::Value>>, StreamError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get();
    let doc = if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|e| StreamError::InvalidParams(e.to_string()))?;
        if s.trim().is_empty() {
            return Ok(None);
        }
        s
    } else {
        text.to_string()
    };
    match serde_json::from_str::<serde_json::Value>(&doc) {
        Ok(serde_json::Value::Object(m)) => Ok(Some(m)),
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(other) => Err(StreamError::InvalidParams(format!("got {}", kind(&other)))),
        Err(e) => Err(StreamError::InvalidParams(e.to_string())),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A stream id must be usable as one path segment of its URLs: 1 to 128 of `A-Z a-z 0-9 . _ ~ -`,
/// and not `.` or `..`. (go-livepeer takes any string and builds URLs that break on `/` or `?`.)
pub fn check_stream_id(id: &str) -> Result<(), StreamError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_STREAM_ID
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StreamError::InvalidStreamId(format!(
            "stream id '{}' must be 1 to {MAX_STREAM_ID} of A-Z a-z 0-9 . _ ~ - (stream_name and stream_id together)",
            id.chars().take(MAX_STREAM_ID + 8).collect::<String>()
        )))
    }
}

/// A random stream id: 16 lowercase hex digits.
pub fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The body of `/ai/stream/start`: `{"params": <params or null>}`.
pub fn start_body(params: Option<&serde_json::Map<String, serde_json::Value>>) -> bytes::Bytes {
    let v = serde_json::json!({ "params": params });
    bytes::Bytes::from(v.to_string())
}

/// The job `request` of the calls about one stream (`{"stream_id": id}`, go-livepeer's
/// `JobRequestDetails`).
pub fn stream_request(id: &str) -> String {
    serde_json::json!({ "stream_id": id }).to_string()
}

/// The answer to a start (`StreamUrls`, go-livepeer's field names), plus the gateway's trickle
/// endpoints for media when ingress or egress is enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StreamUrls {
    /// The stream's id.
    pub stream_id: String,
    /// WHIP ingest, `{base}/process/stream/{id}/whip` (with ingress, while WHIP is served:
    /// `streams.whip_udp_addr`).
    pub whip_url: String,
    /// WHEP playback (not served: empty).
    pub whep_url: String,
    /// RTMP ingest, `rtmp://{host}:{port}/{stream_id}` (with ingress, while `streams.rtmp_addr`
    /// is set).
    pub rtmp_url: String,
    /// The RTMP outputs the stream is pushed to (the start's `rtmp_output`, comma-separated when
    /// several).
    pub rtmp_output_url: String,
    /// `POST` new pipeline parameters here.
    pub update_url: String,
    /// `GET` the stream's status here.
    pub status_url: String,
    /// `GET` the data lines (SSE) here, when data output is enabled.
    pub data_url: String,
    /// `POST` here to stop the stream.
    pub stop_url: String,
    /// Trickle ingress: `POST {publish_url}/{seq}` each media segment (when ingress is enabled).
    /// The URL never changes, whichever orchestrator serves the stream.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub publish_url: String,
    /// Trickle egress: `GET {subscribe_url}/{seq}` the processed segments, from `-1` (when egress
    /// is enabled). The URL never changes, whichever orchestrator serves the stream.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subscribe_url: String,
}

impl StreamUrls {
    /// The URLs of stream `id` under `base` (the gateway's public URL, no trailing `/`).
    /// `rtmp_base` (`rtmp://host:port`) is where the RTMP ingest listens, if it does; `whip`
    /// whether WHIP ingest is served.
    pub fn new(
        base: &str,
        id: &str,
        features: Features,
        rtmp_base: Option<&str>,
        whip: bool,
        outputs: &[String],
    ) -> Self {
        let url = |leaf: &str| format!("{base}/process/stream/{id}/{leaf}");
        Self {
            stream_id: id.to_string(),
            whip_url: if whip && features.ingress { url("whip") } else { String::new() },
            whep_url: String::new(),
            rtmp_url: match rtmp_base {
                Some(b) if features.ingress => format!("{b}/{id}"),
                _ => String::new(),
            },
            rtmp_output_url: outputs.join(","),
            update_url: url("update"),
            status_url: url("status"),
            data_url: if features.data { url("data") } else { String::new() },
            stop_url: url("stop"),
            publish_url: if features.ingress { url("in") } else { String::new() },
            subscribe_url: if features.egress { url("out") } else { String::new() },
        }
    }
}

/// The trickle channels an orchestrator gave a stream (`X-*-Url` of its `/ai/stream/start`
/// answer), absolute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrchestratorUrls {
    /// Params and keep-alives go here (`X-Control-Url`).
    pub control: String,
    /// The runner's events come from here (`X-Events-Url`).
    pub events: String,
    /// Ingress media goes here (`X-Publish-Url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
    /// Egress media comes from here (`X-Subscribe-Url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<String>,
    /// Data lines come from here (`X-Data-Url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// Joins a channel URL an orchestrator gave onto its `service_addr` (go-livepeer
/// `common.AppendHostname`): a URL with a host is kept, a path is put under the address.
pub fn join_url(url: &str, service_addr: &str) -> Result<String, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("empty URL".into());
    }
    if let Ok(u) = url::Url::parse(url) {
        if u.host_str().is_some() && matches!(u.scheme(), "http" | "https") {
            return Ok(url.trim_end_matches('/').to_string());
        }
        return Err(format!("'{url}' is not an http(s) URL"));
    }
    let path = url.trim_start_matches('/');
    let joined = format!("{}/{path}", service_addr.trim_end_matches('/'));
    url::Url::parse(&joined).map_err(|e| format!("'{joined}': {e}"))?;
    Ok(joined.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> String {
        "abc123".into()
    }

    #[test]
    fn go_livepeers_start_bodies_parse() {
        let r = parse_start(
            br#"{"stream_name":"","rtmp_output":"","stream_id":"s1","params":"{\"prompt\":\"x\"}"}"#,
            fixed,
        )
        .expect("valid");
        assert_eq!(r.stream_id, "s1");
        assert_eq!(r.params.expect("params")["prompt"], "x");
        let r = parse_start(br#"{"params":{"a":1}}"#, fixed).expect("an object is accepted too");
        assert_eq!((r.stream_id.as_str(), r.params.map(|p| p.len())), ("abc123", Some(1)));
        let r = parse_start(br#"{"stream_name":"cam","stream_id":"7","params":""}"#, fixed).expect("valid");
        assert_eq!((r.stream_id.as_str(), r.params), ("cam-7", None));
        assert_eq!(parse_start(b"{}", fixed).expect("empty").stream_id, "abc123");
        assert_eq!(parse_start(br#"{"params":null}"#, fixed).expect("null").params, None);
    }

    #[test]
    fn bad_bodies_are_refused_with_their_reason() {
        assert!(matches!(parse_start(b"nope", fixed), Err(StreamError::InvalidBody(_))));
        assert!(matches!(parse_start(b"[1]", fixed), Err(StreamError::InvalidBody(_))));
        assert!(matches!(parse_start(br#"{"stream_id":5}"#, fixed), Err(StreamError::InvalidBody(_))));
        for params in [r#""[1]""#, r#""5""#, r#""{""#, "[1]", "true", r#""\"x\"""#] {
            let body = format!(r#"{{"params":{params}}}"#);
            assert!(matches!(parse_start(body.as_bytes(), fixed), Err(StreamError::InvalidParams(_))), "{params}");
        }
        assert!(matches!(
            parse_start(br#"{"stream_name":"cam-out"}"#, fixed),
            Err(StreamError::InvalidStreamId(m)) if m.contains("-out")
        ));
        for id in ["a/b", "a b", "..", "x?y", &"a".repeat(129)] {
            let body = serde_json::json!({ "stream_id": id }).to_string();
            assert!(matches!(parse_start(body.as_bytes(), fixed), Err(StreamError::InvalidStreamId(_))), "{id}");
        }
    }

    #[test]
    fn features_come_from_the_parameters_flags() {
        let f = Features::of(r#"{"enable_video_ingress":true,"enable_data_output":true,"orchestrators":{}}"#);
        assert_eq!(f, Features { ingress: true, egress: false, data: true });
        assert_eq!(Features::of("{}"), Features::default());
        assert_eq!(Features::of("garbage"), Features::default());
    }

    #[test]
    fn urls_name_the_gateways_own_endpoints() {
        let u = StreamUrls::new(
            "http://gw:9935",
            "s1",
            Features { ingress: true, egress: true, data: false },
            None,
            true,
            &[],
        );
        assert_eq!(u.update_url, "http://gw:9935/process/stream/s1/update");
        assert_eq!(u.whip_url, "http://gw:9935/process/stream/s1/whip");
        let off =
            StreamUrls::new("http://gw", "s", Features { ingress: true, ..Features::default() }, None, false, &[]);
        assert_eq!(off.whip_url, "", "no whip_url while WHIP is off");
        let no_ingress = StreamUrls::new("http://gw", "s", Features::default(), None, true, &[]);
        assert_eq!(no_ingress.whip_url, "", "no whip_url without ingress");
        assert_eq!(u.publish_url, "http://gw:9935/process/stream/s1/in");
        assert_eq!(u.subscribe_url, "http://gw:9935/process/stream/s1/out");
        assert_eq!(u.data_url, "");
        let v = serde_json::to_value(StreamUrls::new("http://gw", "s", Features::default(), None, false, &[]))
            .expect("json");
        for field in [
            "stream_id",
            "whip_url",
            "whep_url",
            "rtmp_url",
            "rtmp_output_url",
            "update_url",
            "status_url",
            "data_url",
            "stop_url",
        ] {
            assert!(v.get(field).is_some(), "{field}: go-livepeer's StreamUrls field");
        }
        assert!(v.get("publish_url").is_none(), "media endpoints only when enabled");
    }

    #[test]
    fn channel_urls_are_joined_as_go_livepeer_joins_them() {
        let base = "https://o:8935";
        assert_eq!(join_url("/ai/trickle/s-control", base).as_deref(), Ok("https://o:8935/ai/trickle/s-control"));
        assert_eq!(join_url("ai/trickle/s", "https://o:8935/").as_deref(), Ok("https://o:8935/ai/trickle/s"));
        assert_eq!(join_url("https://runner:1/ai/trickle/s", base).as_deref(), Ok("https://runner:1/ai/trickle/s"));
        assert!(join_url("", base).is_err());
        assert!(join_url("ftp://x/y", base).is_err());
        assert_eq!(start_body(None), bytes::Bytes::from_static(br#"{"params":null}"#));
        assert_eq!(stream_request("s"), r#"{"stream_id":"s"}"#);
    }

    #[test]
    fn rtmp_outputs_are_one_url_or_a_list_of_rtmp_urls() {
        let outs = |body: &str| parse_start(body.as_bytes(), fixed).map(|r| r.rtmp_outputs);
        assert_eq!(outs(r#"{"rtmp_output":"rtmp://a/live/k"}"#).expect("one"), vec!["rtmp://a/live/k"]);
        assert_eq!(outs(r#"{"rtmp_output":["rtmp://a/x"," rtmps://b:443/y",""]}"#).expect("list").len(), 2);
        assert!(outs(r#"{"rtmp_output":""}"#).expect("none").is_empty());
        for bad in [r#"{"rtmp_output":"http://a/x"}"#, r#"{"rtmp_output":"rtmp:///x"}"#, r#"{"rtmp_output":5}"#] {
            assert!(outs(bad).is_err(), "{bad}");
        }
        let many = serde_json::json!({ "rtmp_output": vec!["rtmp://a/b"; 9] }).to_string();
        assert!(matches!(outs(&many), Err(StreamError::InvalidOutput(_))));
    }
}
