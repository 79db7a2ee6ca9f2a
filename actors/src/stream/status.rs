//! A stream's status as `GET /process/stream/{id}/status` shows it: the runner's last status
//! event (go-livepeer's status store: a `type: "status"` event replaces it) plus what the
//! gateway knows, which, unlike go-livepeer's, does not vanish when the first event arrives
//! (the 3.6a correction) and is never cleared while the stream runs.

use std::time::Instant;

use serde_json::{json, Map, Value};

/// Who the event came through (go-livepeer adds these to every event).
pub(crate) struct EventSource<'a> {
    pub(crate) stream_id: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) capability: &'a str,
    pub(crate) orchestrator_url: &'a str,
}

/// What an event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A `type: "status"` event (now the status).
    Status,
    /// Any other valid event.
    Other,
    /// Not a JSON object, or over the size limit: counted and dropped.
    Invalid,
}

/// The store of one stream.
#[derive(Debug, Default)]
pub(crate) struct StatusStore {
    last: Option<Map<String, Value>>,
    error: Option<(String, u64)>,
    /// Events received (valid or not).
    pub(crate) events: u64,
    /// Events dropped as invalid or too large.
    pub(crate) dropped: u64,
    /// When the last event arrived.
    pub(crate) last_event: Option<Instant>,
}

impl StatusStore {
    /// Takes one event from the events channel: either `{"queue_event_type", "event": {...}}` or
    /// a bare event object, at most `max_bytes`.
    pub(crate) fn on_event(&mut self, body: &[u8], max_bytes: usize, src: &EventSource<'_>, now: Instant) -> EventKind {
        self.events += 1;
        self.last_event = Some(now);
        if body.len() > max_bytes {
            self.dropped += 1;
            return EventKind::Invalid;
        }
        let mut event = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut m)) => match m.remove("event") {
                Some(Value::Object(inner)) if m.contains_key("queue_event_type") => inner,
                Some(other) => {
                    m.insert("event".into(), other);
                    m
                }
                None => m,
            },
            _ => {
                self.dropped += 1;
                return EventKind::Invalid;
            }
        };
        event.insert("stream_id".into(), json!(src.stream_id));
        event.insert("request_id".into(), json!(src.request_id));
        event.insert("pipeline_id".into(), json!(""));
        event.insert("capability".into(), json!(src.capability));
        event.insert("orchestrator_info".into(), json!({"address": "", "url": src.orchestrator_url}));
        if event.get("type").and_then(Value::as_str) != Some("status") {
            return EventKind::Other;
        }
        // go-livepeer keeps the last restart logs and params when a status leaves them out.
        if let (Some(Value::Object(new)), Some(Value::Object(old))) =
            (event.get_mut("inference_status"), self.last.as_ref().and_then(|l| l.get("inference_status")))
        {
            for key in ["last_restart_logs", "last_params"] {
                if new.get(key).is_none_or(Value::is_null) {
                    if let Some(v) = old.get(key) {
                        new.insert(key.into(), v.clone());
                    }
                }
            }
        }
        self.last = Some(event);
        EventKind::Status
    }

    /// Notes an error (go-livepeer's `error` key).
    pub(crate) fn set_error(&mut self, message: String, at_unix_ms: u64) {
        self.error = Some((message, at_unix_ms));
    }

    /// The status document: the last status event, then the gateway's keys over it.
    pub(crate) fn view(&self, gateway: Value, orchestrator: &str, stream_id: &str) -> Value {
        let mut doc = self.last.clone().unwrap_or_default();
        doc.insert("stream_id".into(), json!(stream_id));
        doc.insert("orchestrator".into(), json!(orchestrator));
        doc.entry("whep_url").or_insert(json!(""));
        if let Some((message, at)) = &self.error {
            doc.insert("error".into(), json!({"error_message": message, "error_time": at}));
        }
        doc.insert("gateway".into(), gateway);
        Value::Object(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> EventSource<'static> {
        EventSource { stream_id: "s", request_id: "r", capability: "c", orchestrator_url: "https://o" }
    }

    #[test]
    fn a_status_event_becomes_the_status_and_the_gateway_keys_stay() {
        let mut s = StatusStore::default();
        let now = Instant::now();
        assert_eq!(s.on_event(br#"{"type":"status","fps":30}"#, 1024, &src(), now), EventKind::Status);
        assert_eq!(s.on_event(br#"{"type":"log","line":"x"}"#, 1024, &src(), now), EventKind::Other);
        let v = s.view(json!({"state": "running"}), "https://o", "s");
        assert_eq!(v["fps"], 30);
        assert_eq!(v["orchestrator"], "https://o");
        assert_eq!(v["gateway"]["state"], "running");
        assert_eq!(v["orchestrator_info"]["url"], "https://o");
        // The wrapped form.
        s.on_event(br#"{"queue_event_type":"ai_stream_status","event":{"type":"status","fps":25}}"#, 1024, &src(), now);
        assert_eq!(s.view(json!({}), "", "s")["fps"], 25);
        assert_eq!(s.events, 3);
    }

    #[test]
    fn restart_logs_and_params_carry_over_and_bad_events_are_dropped() {
        let mut s = StatusStore::default();
        let now = Instant::now();
        s.on_event(
            br#"{"type":"status","inference_status":{"last_params":{"p":1},"last_restart_logs":["a"]}}"#,
            1024,
            &src(),
            now,
        );
        s.on_event(br#"{"type":"status","inference_status":{"fps":3}}"#, 1024, &src(), now);
        let v = s.view(json!({}), "", "s");
        assert_eq!(v["inference_status"]["last_params"]["p"], 1);
        assert_eq!(v["inference_status"]["fps"], 3);
        assert_eq!(s.on_event(b"[1,2]", 1024, &src(), now), EventKind::Invalid);
        assert_eq!(s.on_event(b"not json", 1024, &src(), now), EventKind::Invalid);
        assert_eq!(s.on_event(&[b'x'; 100], 10, &src(), now), EventKind::Invalid);
        assert_eq!((s.events, s.dropped), (5, 3));
        s.set_error("gone".into(), 7);
        assert_eq!(s.view(json!({}), "", "s")["error"]["error_time"], 7);
    }
}
