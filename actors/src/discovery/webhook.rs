//! The discovery webhook's wire format and one fetch of it, as go-livepeer's
//! `-orchWebhookUrl`: `GET URL` answers `200` with a JSON array
//! `[{"address": "https://host:port", "score": 1.0}, ...]`.
//!
//! Parsing is a pure function ([`parse`]) so that every rule is unit-tested without a server:
//! - the body must be a JSON array of at most [`MAX_ENTRIES`] elements, else the whole fetch
//!   fails (a truncated list applied as if complete would drain the orchestrators cut off);
//! - each element's `address` is normalised like `--orch-addr` (bare `host:port` means https);
//!   `score` and any other field are ignored (the gateway ranks by its own health model);
//! - an element's `label`, when present, names the orchestrator for operators; one that is not
//!   a valid label is ignored (the orchestrator is still used) and reported with the skipped
//!   entries;
//! - an element that is not an object, has no string `address`, or whose address is not a
//!   usable orchestrator URL is *skipped* and reported, and the rest applies: one bad row must
//!   not freeze discovery of every other orchestrator;
//! - a non-empty list in which no element is usable fails the fetch, because applying it
//!   would remove every discovered orchestrator on what is almost certainly a broken webhook;
//!   an empty array `[]` is an explicit "no orchestrators" and applies.

use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue};

use serde::Serialize;
use serde_json::Value;

use crate::orchestrator::{normalize_url, Label, Listed};

/// Largest webhook answer read (bytes); a bigger one fails the fetch.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most entries accepted in one answer; more fails the fetch.
pub(crate) const MAX_ENTRIES: usize = 1000;

/// A successfully parsed webhook answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WebhookList {
    /// The orchestrators listed (normalised URL, label; no declared capabilities),
    /// deduplicated by URL (the first wins), in the order listed.
    pub(crate) entries: Vec<Listed>,
    /// Entries skipped (or whose label was ignored), each with the reason.
    pub(crate) skipped: Vec<SkippedEntry>,
}

/// One entry of the answer that was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct SkippedEntry {
    /// Position in the array.
    pub(crate) index: usize,
    /// Why it was skipped.
    pub(crate) reason: String,
}

/// Why a fetch changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WebhookError {
    /// TCP connect or TLS handshake failed.
    #[error("cannot connect to the webhook: {0}")]
    Connect(String),
    /// No complete answer within the timeout.
    #[error("the webhook did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke or the answer was not HTTP.
    #[error("transport error: {0}")]
    Transport(String),
    /// A status other than 200 (body excerpt attached).
    #[error("the webhook answered {0}: {1}")]
    Status(u16, String),
    /// The body is over [`MAX_BODY_BYTES`].
    #[error("the webhook answer is over {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// The body is not a JSON array.
    #[error("the webhook answer is not a JSON array of orchestrators: {0}")]
    Body(String),
    /// More than [`MAX_ENTRIES`] entries.
    #[error("the webhook lists {0} entries; at most {MAX_ENTRIES} are accepted")]
    TooManyEntries(usize),
    /// Entries were listed but none was usable.
    #[error("none of the webhook's {0} entries is a usable orchestrator address (first problem: {1})")]
    NoValidEntry(usize, String),
    /// The store could not record the change (the fetch itself worked).
    #[error("the registry could not be updated: {0}")]
    Registry(String),
}

impl WebhookError {
    /// Stable short name, the `outcome` label of the fetch metric and the admin view.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            WebhookError::Connect(_) => "connect",
            WebhookError::Timeout(_) => "timeout",
            WebhookError::Transport(_) => "transport",
            WebhookError::Status(..) => "http-status",
            WebhookError::TooLarge => "too-large",
            WebhookError::Body(_) => "bad-json",
            WebhookError::TooManyEntries(_) => "too-many-entries",
            WebhookError::NoValidEntry(..) => "no-valid-entry",
            WebhookError::Registry(_) => "registry",
        }
    }
}

/// Parses a webhook answer body (rules in the module docs).
pub(crate) fn parse(body: &[u8]) -> Result<WebhookList, WebhookError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Body(e.to_string()))?;
    let Value::Array(entries) = value else {
        return Err(WebhookError::Body(format!("expected an array, got {}", kind(&value))));
    };
    if entries.len() > MAX_ENTRIES {
        return Err(WebhookError::TooManyEntries(entries.len()));
    }
    let mut list = WebhookList::default();
    for (index, entry) in entries.iter().enumerate() {
        let address = match entry.get("address") {
            Some(Value::String(a)) => a,
            Some(other) => {
                list.skipped.push(SkippedEntry { index, reason: format!("address is {}, not a string", kind(other)) });
                continue;
            }
            None if entry.is_object() => {
                list.skipped.push(SkippedEntry { index, reason: "no address".into() });
                continue;
            }
            None => {
                list.skipped.push(SkippedEntry { index, reason: format!("{}, not an object", kind(entry)) });
                continue;
            }
        };
        let url = match normalize_url(address) {
            Ok(url) if !list.entries.iter().any(|l| l.url == url) => url,
            Ok(_) => continue,
            Err(e) => {
                list.skipped.push(SkippedEntry { index, reason: e.to_string() });
                continue;
            }
        };
        let label = match entry.get("label") {
            None | Some(Value::Null) => None,
            Some(Value::String(l)) => Label::new(l)
                .inspect_err(|e| list.skipped.push(SkippedEntry { index, reason: format!("label ignored: {e}") }))
                .ok(),
            Some(other) => {
                let reason = format!("label ignored: {}, not a string", kind(other));
                list.skipped.push(SkippedEntry { index, reason });
                None
            }
        };
        list.entries.push(Listed { url, capabilities: Vec::new(), label });
    }
    if list.entries.is_empty() {
        if let Some(first) = list.skipped.first() {
            return Err(WebhookError::NoValidEntry(entries.len(), first.reason.clone()));
        }
    }
    Ok(list)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Headers sent with every webhook fetch (an `Authorization` for a private registry, say),
/// from the config file. Their values are secrets: marked sensitive, and left out of `Debug`
/// (only names are ever shown or logged).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebhookHeaders(Vec<(HeaderName, HeaderValue)>);

impl std::fmt::Debug for WebhookHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// Headers a webhook fetch may not set: the client sets them from the URL and the body.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

impl WebhookHeaders {
    /// Checks `(name, value)` pairs: valid header names and values, none the client sets
    /// itself. The error names the header, never its value.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut out = Vec::new();
        for (name, value) in pairs {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("'{name}' is not a header name"))?;
            if RESERVED_HEADERS.contains(&n.as_str()) {
                return Err(format!("'{name}' is set by the gateway itself"));
            }
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of '{name}' is not a valid header value (control characters?)"))?;
            v.set_sensitive(true);
            out.push((n, v));
        }
        Ok(Self(out))
    }

    /// The headers, values included (to send them).
    pub(crate) fn pairs(&self) -> &[(HeaderName, HeaderValue)] {
        &self.0
    }

    /// The header names, for views and logs.
    pub(crate) fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| n.to_string()).collect()
    }
}

/// `GET url` once with `headers`, bounded by `timeout` overall and by [`MAX_BODY_BYTES`],
/// then [`parse`].
pub(crate) async fn fetch(
    client: &awc::Client,
    url: &str,
    headers: &WebhookHeaders,
    timeout: Duration,
) -> Result<WebhookList, WebhookError> {
    use awc::error::{PayloadError, SendRequestError};
    let fut = async {
        let mut req = client.get(url).insert_header((awc::http::header::ACCEPT, "application/json"));
        for (name, value) in &headers.0 {
            req = req.insert_header((name.clone(), value.clone()));
        }
        let mut resp = req.timeout(timeout).send().await.map_err(|e| match e {
            SendRequestError::Connect(c) => WebhookError::Connect(c.to_string()),
            SendRequestError::Timeout => WebhookError::Timeout(timeout),
            other => WebhookError::Transport(other.to_string()),
        })?;
        let status = resp.status().as_u16();
        let body = resp.body().limit(MAX_BODY_BYTES).await.map_err(|e| match e {
            PayloadError::Overflow => WebhookError::TooLarge,
            other => WebhookError::Transport(other.to_string()),
        })?;
        if status != 200 {
            return Err(WebhookError::Status(status, crate::protocol::client::excerpt(&body)));
        }
        parse(&body)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(WebhookError::Timeout(timeout)),
    }
}

/// Checks a configured webhook URL: absolute, http or https, with a host (a path and query
/// are allowed, unlike an orchestrator address). Returns it as parsed.
pub fn check_webhook_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let u = url::Url::parse(raw)
        .map_err(|e| format!("'{}' is not an absolute http:// or https:// URL ({e})", redact_raw(raw)))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("'{}' has scheme '{}'; only http and https are supported", redact(raw), u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{}' has no host", redact(raw)));
    }
    Ok(u.to_string())
}

/// An unparseable URL may still hold a secret after `?`: show what comes before it.
fn redact_raw(raw: &str) -> &str {
    raw.split(['?', '@']).next().unwrap_or("")
}

/// The webhook URL as logs and the admin view show it: scheme, host, port and path only, since
/// a query string or credentials may carry a secret.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let hidden = if u.query().is_some() || !u.username().is_empty() { "?…" } else { "" };
            format!("{}://{}{port}{}{hidden}", u.scheme(), u.host_str().unwrap_or(""), u.path())
        }
        Err(_) => "(invalid url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_go_livepeer_shape_parses_and_normalises() {
        let body = br#"[{"address":"https://a.example:8935","score":1.0},
                        {"address":"10.0.0.2:8935"},
                        {"address":"http://b.example:9000/","score":0.2,"region":"eu"}]"#;
        let list = parse(body).expect("valid");
        assert_eq!(urls(&list), vec!["https://a.example:8935", "https://10.0.0.2:8935", "http://b.example:9000"]);
        assert!(list.skipped.is_empty());
        assert!(list.entries.iter().all(|l| l.label.is_none()));
    }

    fn urls(list: &WebhookList) -> Vec<&str> {
        list.entries.iter().map(|l| l.url.as_str()).collect()
    }

    #[test]
    fn entries_may_carry_a_label_and_a_bad_one_is_ignored_not_the_orchestrator() {
        let body =
            br#"[{"address":"a:1","label":"fast"}, {"address":"b:1","label":"x\ny"}, {"address":"c:1","label":7},
                        {"address":"d:1","label":null}]"#;
        let list = parse(body).expect("valid");
        assert_eq!(urls(&list), vec!["https://a:1", "https://b:1", "https://c:1", "https://d:1"]);
        let labels: Vec<Option<&str>> = list.entries.iter().map(|l| l.label.as_ref().map(Label::as_str)).collect();
        assert_eq!(labels, vec![Some("fast"), None, None, None]);
        let skipped: Vec<(usize, bool)> =
            list.skipped.iter().map(|s| (s.index, s.reason.starts_with("label ignored"))).collect();
        assert_eq!(skipped, vec![(1, true), (2, true)]);
    }

    #[test]
    fn duplicates_after_normalisation_count_once() {
        let list = parse(br#"[{"address":"a:1"},{"address":"https://A:1/"}]"#).expect("valid");
        assert_eq!(urls(&list), vec!["https://a:1"]);
    }

    #[test]
    fn invalid_entries_are_skipped_and_the_rest_applies() {
        let body = br#"[{"address":"https://ok:1"}, {"address":"ftp://x:1"}, {"address":"http://x:1/path"},
                        {"score":1}, {"address":5}, "https://bare-string:1", null]"#;
        let list = parse(body).expect("one valid entry is enough");
        assert_eq!(urls(&list), vec!["https://ok:1"]);
        let skipped: Vec<usize> = list.skipped.iter().map(|s| s.index).collect();
        assert_eq!(skipped, vec![1, 2, 3, 4, 5, 6]);
        assert!(list.skipped[0].reason.contains("scheme"), "{:?}", list.skipped[0]);
        assert_eq!(list.skipped[2].reason, "no address");
    }

    #[test]
    fn an_empty_list_applies_but_a_list_of_only_bad_entries_fails() {
        assert_eq!(parse(b"[]").expect("empty is explicit"), WebhookList::default());
        let err = parse(br#"[{"address":"ftp://x:1"},{"nope":1}]"#).expect_err("nothing usable");
        assert_eq!(err.outcome(), "no-valid-entry");
        assert!(err.to_string().contains("scheme"), "{err}");
    }

    #[test]
    fn what_is_not_an_array_fails_the_fetch() {
        for body in [&b"{\"address\":\"a:1\"}"[..], b"not json", b"", b"null", b"[{\"address\":"] {
            let err = parse(body).expect_err("must fail");
            assert_eq!(err.outcome(), "bad-json", "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn too_many_entries_fail_rather_than_truncate() {
        let body = format!("[{}]", vec![r#"{"address":"a:1"}"#; MAX_ENTRIES + 1].join(","));
        assert_eq!(parse(body.as_bytes()), Err(WebhookError::TooManyEntries(MAX_ENTRIES + 1)));
        let body = format!("[{}]", vec![r#"{"address":"a:1"}"#; MAX_ENTRIES].join(","));
        assert!(parse(body.as_bytes()).is_ok());
    }

    #[test]
    fn webhook_urls_must_be_absolute_http() {
        assert_eq!(check_webhook_url(" https://hook.example/o?k=1 ").as_deref(), Ok("https://hook.example/o?k=1"));
        assert!(check_webhook_url("ftp://hook/x").is_err_and(|e| e.contains("scheme")));
        assert!(check_webhook_url("hook.example/list").is_err_and(|e| e.contains("http://")));
        assert!(check_webhook_url("http://").is_err());
        assert!(check_webhook_url("hook:8080?token=s3cret").is_err_and(|e| !e.contains("s3cret")));
    }

    #[test]
    fn redaction_hides_query_and_credentials() {
        assert_eq!(redact("https://hook.example/orchs?token=s3cret"), "https://hook.example/orchs?…");
        assert_eq!(redact("http://u:p@hook:8080/x"), "http://hook:8080/x?…");
        assert_eq!(redact("http://127.0.0.1:9/list"), "http://127.0.0.1:9/list");
    }
}
