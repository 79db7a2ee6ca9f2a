//! The events channel: every event the runner publishes is counted and taken into the stream's
//! status store; the stream's task watches how long ago the last one came (the events
//! timeout). A channel that is gone, closed or keeps failing moves the stream (go-livepeer only
//! stops reading it, and with it its own events watchdog: the 3.6a correction).

use std::time::Instant;

use super::Pump;
use crate::protocol::trickle::subscriber::Subscriber;
use crate::stream::status::{EventKind, EventSource};

pub(super) async fn run(pump: Pump, url: String) {
    let s = &pump.settings;
    let mut sub = Subscriber::new(pump.client.clone(), url, s.read_retries, s.retry_pause, s.max_event_bytes);
    let stream = &pump.stream;
    let cap = stream.capability.to_string();
    loop {
        let mut segment = match sub.next().await {
            Ok(seg) => seg,
            Err(end) => return pump.channel_ended("events", &end),
        };
        let body = match segment.read_all().await {
            Ok(b) => b,
            Err(e) => {
                if let Err(end) = sub.broken(segment.seq, &e) {
                    return pump.channel_ended("events", &end);
                }
                continue;
            }
        };
        let src = EventSource {
            stream_id: &stream.id,
            request_id: &stream.request_id,
            capability: &cap,
            orchestrator_url: &pump.orchestrator_url,
        };
        let kind = stream.status.lock().on_event(&body, s.max_event_bytes, &src, Instant::now());
        let kind = match kind {
            EventKind::Status => "status",
            EventKind::Other => "other",
            EventKind::Invalid => "invalid",
        };
        metrics::counter!(crate::metrics::STREAM_EVENTS_TOTAL, "capability" => pump.label.value(), "kind" => kind)
            .increment(1);
    }
}
