//! Discovery documents: what an orchestrator's `GET /discovery` (or a remote signer's
//! `GET /discover-orchestrators`) answers, read leniently and checked strictly.
//!
//! The document is a JSON array of `{"address", "runners": [...]}` entries
//! (`ai_http.go:DiscoverLiveRunners`; `runners` is omitted when an orchestrator has no ready
//! runner). Each runner record is checked on its own: one bad record is skipped with its
//! reason and the others are kept. A record is usable when its `url` is an `http(s)` URL at the
//! origin of its entry's `address` (an orchestrator may not send the gateway elsewhere), its
//! `app` is a valid [`AppName`], and its `mode` is `persistent` (URL ending in `/session`) or
//! `single-shot`. Synthetic Scope runners (no `mode`, URL `{serviceURI}/scope`) speak another
//! protocol and are skipped. Pure: parsing only.

use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::app::AppName;
use super::price::{RunnerPrice, Unit};

/// Largest discovery answer read (go-livepeer's signer reads 1 MiB per orchestrator).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Most runner records kept from one document (`livepeer/node` registers at most 256).
pub const MAX_RUNNERS: usize = 256;
/// Longest `metadata` a record may carry (go-livepeer's limit).
pub const MAX_METADATA_BYTES: usize = 1024;
/// Longest free-text field kept (`version`, GPU name and id): longer ones are cut.
const MAX_TEXT: usize = 128;
/// Longest route segment used as the runner's id; a longer or odd one is replaced by a digest.
const MAX_ROUTE: usize = 64;

/// How a runner is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Sessions: reserve with `POST {url}`, then use the session's `app_url`.
    Persistent,
    /// One request per reservation: `ANY {url}/{path}`.
    SingleShot,
}

impl Mode {
    /// Its name on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Persistent => "persistent",
            Mode::SingleShot => "single-shot",
        }
    }
}

/// A runner's GPU as discovery describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// Its id on the host.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Its model name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its memory in MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_mb: Option<u64>,
}

/// One usable runner record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRecord {
    /// Where to reserve a session (persistent) or send a call (single-shot).
    pub url: String,
    /// The runner's id at its orchestrator: the `{runner}` segment of `/apps/{runner}/...`,
    /// or a digest of the URL's path for proxy URLs.
    pub route: String,
    /// The app it serves.
    pub app: AppName,
    /// How it is used.
    pub mode: Mode,
    /// Its GPU, when listed.
    pub gpu: Option<Gpu>,
    /// Its version, when listed.
    pub version: Option<String>,
    /// Its public metadata, when listed (at most 1 KiB).
    pub metadata: Option<String>,
    /// Sessions it holds at once.
    pub capacity: i64,
    /// Sessions it holds now.
    pub capacity_used: i64,
    /// Sessions it can take now.
    pub capacity_available: i64,
    /// Its price; `None` when the record carries none (offchain, or a price the orchestrator
    /// could not convert).
    pub price: Option<RunnerPrice>,
    /// A `price_info` that cannot be used (another currency, an unknown unit, not an integer):
    /// why. Such a runner cannot be paid and is not routed to.
    pub price_unusable: Option<String>,
    /// When a remote signer last heard from its orchestrator (`livepeer/node`), as given.
    pub last_seen: Option<String>,
}

/// A record left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The record's `url`, when it had one.
    pub url: Option<String>,
    /// Why.
    pub reason: String,
}

/// One entry of a document: an orchestrator's address and its usable runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The orchestrator's service address (normalised origin), when the entry names one.
    pub address: Option<String>,
    /// Its usable runners, in the document's order.
    pub runners: Vec<RunnerRecord>,
}

/// A parsed document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// Its entries.
    pub entries: Vec<Entry>,
    /// Records left out.
    pub skipped: Vec<Skipped>,
}

impl Document {
    /// Every usable runner of every entry.
    pub fn runners(&self) -> impl Iterator<Item = &RunnerRecord> {
        self.entries.iter().flat_map(|e| e.runners.iter())
    }
}

/// Why a whole document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON.
    #[error("the discovery answer is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an array of entries.
    #[error("the discovery answer is not an array of {{\"address\", \"runners\"}} entries")]
    NotAnArray,
}

/// Parses a discovery document received from `origin` (the orchestrator's registered base URL;
/// an entry without `address` is taken to be its own).
pub fn parse(body: &[u8], origin: &str) -> Result<Document, DocumentError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| DocumentError::NotJson(e.to_string()))?;
    let Value::Array(items) = value else { return Err(DocumentError::NotAnArray) };
    let mut doc = Document::default();
    let mut seen = std::collections::HashSet::new();
    let mut kept = 0usize;
    for item in items {
        let Value::Object(entry) = item else {
            doc.skipped.push(Skipped { url: None, reason: "an entry that is not an object".into() });
            continue;
        };
        let address = match entry.get("address").and_then(Value::as_str).filter(|a| !a.trim().is_empty()) {
            Some(a) => match origin_of(a) {
                Some(o) => Some(o),
                None => {
                    doc.skipped.push(Skipped {
                        url: None,
                        reason: format!("entry address '{}' is not an http(s) URL", cut(a)),
                    });
                    continue;
                }
            },
            None => None,
        };
        let base = address.clone().or_else(|| origin_of(origin));
        let mut runners = Vec::new();
        let list = match entry.get("runners") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list.clone(),
            Some(_) => {
                doc.skipped.push(Skipped { url: None, reason: "'runners' is not an array".into() });
                Vec::new()
            }
        };
        for r in list {
            if kept >= MAX_RUNNERS {
                doc.skipped.push(Skipped {
                    url: url_field(&r),
                    reason: format!("over the {MAX_RUNNERS} runners read from one document"),
                });
                continue;
            }
            match record(&r, base.as_deref()) {
                Ok(rec) if !seen.insert(rec.url.clone()) => {
                    doc.skipped.push(Skipped { url: Some(rec.url), reason: "listed twice (the first is kept)".into() });
                }
                Ok(rec) => {
                    kept += 1;
                    runners.push(rec);
                }
                Err(reason) => doc.skipped.push(Skipped { url: url_field(&r), reason }),
            }
        }
        doc.entries.push(Entry { address, runners });
    }
    Ok(doc)
}

fn url_field(r: &Value) -> Option<String> {
    r.get("url").and_then(Value::as_str).map(cut)
}

/// At most [`MAX_TEXT`] characters of `s`.
fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// The normalised origin (`scheme://host:port`, no trailing slash) of an http(s) URL.
pub fn origin_of(raw: &str) -> Option<String> {
    let url = Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

fn text(r: &Value, field: &str) -> Option<String> {
    r.get(field).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(cut)
}

fn count(r: &Value, field: &str) -> Result<Option<i64>, String> {
    match r.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().filter(|n| *n >= 0).map(Some).ok_or_else(|| format!("{field} is not a count")),
    }
}

/// One record, checked: the record or why it is left out.
fn record(r: &Value, base: Option<&str>) -> Result<RunnerRecord, String> {
    if !r.is_object() {
        return Err("a runner that is not an object".into());
    }
    let raw_url = r.get("url").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if raw_url.is_empty() {
        return Err("no url".into());
    }
    let url = Url::parse(raw_url).map_err(|e| format!("url does not parse: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("url scheme '{}' is not http(s)", url.scheme()));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("url carries a query, fragment or credentials".into());
    }
    let origin = url.origin().ascii_serialization();
    if base.is_none_or(|b| b != origin) {
        return Err(format!("url is not at the orchestrator's address ({})", base.unwrap_or("none")));
    }
    let app = text(r, "app").ok_or("no app")?;
    let app = AppName::new(&app).map_err(|e| format!("app '{app}': {e}"))?;
    let path = url.path().trim_end_matches('/').to_string();
    let mode = match r.get("mode").and_then(Value::as_str).map(str::trim) {
        Some("persistent") => Mode::Persistent,
        Some("single-shot") => Mode::SingleShot,
        Some(other) => return Err(format!("unknown mode '{}'", cut(other))),
        None => return Err("no mode (a Scope worker: another protocol)".into()),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let route = match (mode, segments.as_slice()) {
        (Mode::Persistent, ["", "apps", route, "session"]) => route.to_string(),
        (Mode::Persistent, _) => {
            return Err("a persistent runner's url must be {orchestrator}/apps/{runner}/session".into())
        }
        (Mode::SingleShot, ["", "apps", route, "app"]) => route.to_string(),
        (Mode::SingleShot, _) => String::new(),
    };
    let route = if !route.is_empty()
        && route.len() <= MAX_ROUTE
        && route.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        route
    } else {
        digest(&path)
    };
    let metadata = match r.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) if m.len() > MAX_METADATA_BYTES => {
            return Err(format!("metadata is {} bytes (at most {MAX_METADATA_BYTES})", m.len()))
        }
        Some(Value::String(m)) => Some(m.clone()).filter(|m| !m.is_empty()),
        Some(_) => return Err("metadata is not a string".into()),
    };
    let gpu = r.get("gpu").filter(|g| g.is_object()).map(|g| Gpu {
        id: text(g, "id").unwrap_or_default(),
        name: text(g, "name").unwrap_or_default(),
        vram_mb: g.get("vram_mb").and_then(Value::as_u64),
    });
    let capacity = count(r, "capacity")?.unwrap_or(0);
    let capacity_used = count(r, "capacity_used")?.unwrap_or(0);
    let capacity_available = count(r, "capacity_available")?.unwrap_or((capacity - capacity_used).max(0));
    let (price, price_unusable) = match r.get("price_info") {
        None | Some(Value::Null) => (None, None),
        Some(p) => match price(p) {
            Ok(p) => (Some(p), None),
            Err(why) => (None, Some(why)),
        },
    };
    Ok(RunnerRecord {
        url: format!("{origin}{path}"),
        route,
        app,
        mode,
        gpu,
        version: text(r, "version"),
        metadata,
        capacity,
        capacity_used,
        capacity_available,
        price,
        price_unusable,
        last_seen: text(r, "last_seen"),
    })
}

/// A `price_info` object: an integer number of wei (a JSON number or a numeric string, as Go's
/// `json.Number` may be written) per a known unit.
fn price(p: &Value) -> Result<RunnerPrice, String> {
    let currency = p.get("currency").and_then(Value::as_str).unwrap_or_default();
    if !currency.trim().eq_ignore_ascii_case("wei") {
        return Err(format!("price currency '{}' is not wei", cut(currency)));
    }
    let unit_name = p.get("unit").and_then(Value::as_str).unwrap_or_default();
    let unit =
        Unit::parse(unit_name).ok_or_else(|| format!("price unit '{}' is not one the gateway pays", cut(unit_name)))?;
    let price = match p.get("price") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .ok_or("price is not a whole number of wei")?;
    Ok(RunnerPrice { price, unit })
}

/// A short stable id for a runner URL path that has no usable `{runner}` segment.
fn digest(path: &str) -> String {
    use sha3::Digest as _;
    let h = sha3::Keccak256::digest(path.as_bytes());
    format!("u{}", hex::encode(&h[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORCH: &str = "https://orch:8935";

    fn doc(runners: Value) -> Vec<u8> {
        json!([{"address": ORCH, "runners": runners}]).to_string().into_bytes()
    }

    fn scope() -> Value {
        json!({"url": "https://orch:8935/apps/scope-l40s/session",
               "gpu": {"id": "0", "name": "NVIDIA L40S", "vram_mb": 46068},
               "app": "live-video-to-video/scope", "version": "1.4.0", "metadata": "{}", "mode": "persistent",
               "capacity": 2, "capacity_used": 1, "capacity_available": 1,
               "price_info": {"price": 12345, "currency": "wei", "unit": "seconds"}})
    }

    #[test]
    fn go_livepeers_example_record_is_read_whole() {
        let d = parse(&doc(json!([scope()])), ORCH).expect("parses");
        assert!(d.skipped.is_empty(), "{:?}", d.skipped);
        let r = d.runners().next().expect("one runner");
        assert_eq!(r.url, "https://orch:8935/apps/scope-l40s/session");
        assert_eq!(r.route, "scope-l40s");
        assert_eq!(r.app.as_str(), "live-video-to-video/scope");
        assert_eq!(r.mode, Mode::Persistent);
        assert_eq!(r.gpu.as_ref().map(|g| g.name.as_str()), Some("NVIDIA L40S"));
        assert_eq!((r.capacity, r.capacity_used, r.capacity_available), (2, 1, 1));
        assert_eq!(r.price, Some(RunnerPrice { price: 12345, unit: Unit::Seconds }));
        assert_eq!(r.version.as_deref(), Some("1.4.0"));
    }

    #[test]
    fn bad_records_are_skipped_one_by_one_with_their_reason() {
        let mut foreign = scope();
        foreign["url"] = json!("https://elsewhere:1/apps/x/session");
        let mut no_mode = scope();
        no_mode.as_object_mut().map(|o| o.remove("mode"));
        no_mode["url"] = json!("https://orch:8935/scope");
        let mut bad_app = scope();
        bad_app["app"] = json!("a b");
        let mut bad_path = scope();
        bad_path["url"] = json!("https://orch:8935/apps/x/other");
        let mut big_meta = scope();
        big_meta["metadata"] = json!("m".repeat(MAX_METADATA_BYTES + 1));
        let mut ok = scope();
        ok["url"] = json!("https://orch:8935/apps/ok/session");
        let d = parse(&doc(json!([foreign, no_mode, bad_app, bad_path, big_meta, 7, ok.clone(), ok])), ORCH)
            .expect("parses");
        assert_eq!(d.runners().count(), 1, "{:?}", d.skipped);
        let reasons: Vec<&str> = d.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons.len(), 7, "{reasons:?}");
        assert!(reasons[0].contains("not at the orchestrator's address"), "{reasons:?}");
        assert!(reasons[1].contains("no mode"));
        assert!(reasons[2].contains("app 'a b'"));
        assert!(reasons[3].contains("/apps/{runner}/session"));
        assert!(reasons[4].contains("metadata"));
        assert!(reasons[5].contains("not an object"));
        assert!(reasons[6].contains("twice"));
    }

    #[test]
    fn whole_documents_that_are_not_discovery_are_refused() {
        assert!(matches!(parse(b"<html>", ORCH), Err(DocumentError::NotJson(_))));
        assert_eq!(parse(b"{\"error\":{\"message\":\"x\"}}", ORCH), Err(DocumentError::NotAnArray));
        // No runners (go-livepeer omits the field): an empty, valid document.
        let d = parse(json!([{"address": ORCH}]).to_string().as_bytes(), ORCH).expect("parses");
        assert_eq!(d.runners().count(), 0);
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn prices_and_capacity_are_read_as_both_implementations_write_them() {
        let mut r = scope();
        r["price_info"] = json!({"price": "720", "currency": "WEI", "unit": "720p-pixel-seconds"});
        r.as_object_mut().map(|o| o.remove("capacity_available"));
        let d = parse(&doc(json!([r])), ORCH).expect("parses");
        let rec = d.runners().next().expect("kept");
        assert_eq!(rec.price, Some(RunnerPrice { price: 720, unit: Unit::PixelSeconds720p }));
        assert_eq!(rec.capacity_available, 1, "capacity - capacity_used");
        for (p, why) in [
            (json!({"price": 1, "currency": "usd", "unit": "hour"}), "currency"),
            (json!({"price": 1, "currency": "wei", "unit": "hour"}), "unit"),
            (json!({"price": 1.5, "currency": "wei", "unit": "seconds"}), "whole number"),
        ] {
            let mut r = scope();
            r["price_info"] = p;
            let d = parse(&doc(json!([r])), ORCH).expect("parses");
            let rec = d.runners().next().expect("kept, unpayable");
            assert_eq!(rec.price, None);
            assert!(rec.price_unusable.as_deref().is_some_and(|m| m.contains(why)), "{:?}", rec.price_unusable);
        }
        let mut neg = scope();
        neg["capacity"] = json!(-1);
        assert!(parse(&doc(json!([neg])), ORCH).expect("parses").skipped[0].reason.contains("capacity"));
    }

    #[test]
    fn single_shot_and_proxy_urls_get_a_route() {
        let one = json!({"url": "https://orch:8935/apps/echo-1/app", "app": "echo", "mode": "single-shot"});
        let proxy = json!({"url": "https://orch:8935/run/ab%20cd", "app": "echo", "mode": "single-shot"});
        let d = parse(&doc(json!([one, proxy])), ORCH).expect("parses");
        let routes: Vec<&str> = d.runners().map(|r| r.route.as_str()).collect();
        assert_eq!(routes[0], "echo-1");
        assert!(routes[1].starts_with('u') && routes[1].len() == 13, "{routes:?}");
        assert!(d.runners().all(|r| r.mode == Mode::SingleShot));
    }

    #[test]
    fn the_registered_origin_stands_in_for_a_missing_address_and_the_document_is_bounded() {
        let runners: Vec<Value> = (0..MAX_RUNNERS + 3)
            .map(|i| json!({"url": format!("https://orch:8935/apps/r{i}/session"), "app": "a", "mode": "persistent"}))
            .collect();
        let body = json!([{"runners": runners}]).to_string();
        let d = parse(body.as_bytes(), "https://orch:8935").expect("parses");
        assert_eq!(d.runners().count(), MAX_RUNNERS);
        assert_eq!(d.skipped.len(), 3);
        assert_eq!(origin_of("HTTPS://Orch:8935/x"), Some("https://orch:8935".into()));
        assert_eq!(origin_of("ftp://x"), None);
    }
}
