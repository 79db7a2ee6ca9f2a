//! Live streams end to end (`/process/stream/*`): simulated orchestrators serving go-livepeer's
//! stream side (`/ai/stream/*`, trickle channels, a runner), the real gateway in between, real
//! HTTP clients for the start, the status, the data SSE and the media endpoints.

mod api;
mod inputs;
mod media;
mod payments;
mod rtmp;
mod swaps;
mod whip;

use byoc_actors::protocol::header::encode_client_header;
use byoc_sim::{Knobs, SimHandle};
use serde_json::{json, Value};

use crate::support::*;

pub const CAP: &str = "live-video";

/// A simulator's stream knobs: events and data lines every 100 ms.
pub fn live() -> Knobs {
    Knobs { stream_event_interval_ms: 100, stream_data_interval_ms: 100, ..healthy() }
}

/// Every stream feature on.
pub fn all() -> Value {
    json!({"enable_video_ingress": true, "enable_video_egress": true, "enable_data_output": true})
}

/// The `Livepeer` header of a start or update for `cap` with `parameters`.
pub fn header(cap: &str, parameters: &Value, timeout: u64) -> String {
    encode_client_header(&json!({
        "capability": cap, "request": "{}", "parameters": parameters.to_string(), "timeout_seconds": timeout,
    }))
}

/// Stream tests' gateway: a quick watchdog and small timeouts so triggers show within a test.
pub fn streams_config(c: &mut byoc_gateway::config::Config) {
    c.streams.event_timeout = std::time::Duration::from_secs(2);
    c.streams.output_timeout = std::time::Duration::from_secs(2);
    c.capabilities.insert(CAP.into(), serde_json::from_value(json!({"per_try_timeout": "2s"})).expect("policy"));
}

impl TestGateway {
    /// `POST /process/stream/start` with `parameters` and the start `body`.
    pub async fn start_stream(&self, cap: &str, parameters: &Value, body: &Value) -> Answer {
        let req = self
            .client
            .post(format!("{}/process/stream/start", self.http))
            .insert_header(("Livepeer", header(cap, parameters, 10)))
            .insert_header(("Content-Type", "application/json"));
        read(req.send_body(body.to_string()).await).await
    }

    /// Starts stream `id` with every feature and asserts it started.
    pub async fn started(&self, id: &str) -> Value {
        let a = self.start_stream(CAP, &all(), &json!({"stream_id": id, "params": "{\"prompt\":\"a\"}"})).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        a.json()
    }

    /// `GET` a stream's status.
    pub async fn stream_status(&self, id: &str) -> Answer {
        read(self.client.get(format!("{}/process/stream/{id}/status", self.http)).send().await).await
    }

    /// The admin view of one stream.
    pub async fn stream_report(&self, id: &str) -> Value {
        let a = self.admin_get(&format!("/admin/streams/{id}")).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        a.json()
    }

    /// `POST` one ingress segment.
    pub async fn publish(&self, urls: &Value, seq: i64, body: Vec<u8>) -> Answer {
        let url = format!("{}/{seq}", urls["publish_url"].as_str().expect("publish_url"));
        read(self.client.post(url).send_body(body).await).await
    }

    /// Waits until the stream runs on `sim`.
    pub async fn runs_on(&self, id: &str, sim: &SimHandle) -> Value {
        eventually(&format!("stream {id} running on {}", sim.url), 500, || async {
            let r = self.stream_report(id).await;
            (r["state"] == "running" && r["orchestrator"]["url"] == sim.url.as_str()).then_some(r)
        })
        .await
    }
}

impl TestGateway {
    /// Registers `sim` for [`CAP`] at runtime and waits until its pair is routable.
    pub async fn add_live(&self, sim: &SimHandle) {
        let created = self.admin_post("/admin/orchestrators", json!({"url": sim.url, "capabilities": [CAP]})).await;
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
        eventually("the new pair routable", 500, || async {
            self.find_pair(CAP, &sim.url).await.filter(|p| p["routable"] == true).map(drop)
        })
        .await;
    }

    /// Posts an update of stream `id`'s params.
    pub async fn update_stream(&self, id: &str, params: &Value) -> Answer {
        let url = format!("{}/process/stream/{id}/update", self.http);
        read(
            self.client
                .post(url)
                .insert_header(("Livepeer", header(CAP, &all(), 5)))
                .send_body(params.to_string())
                .await,
        )
        .await
    }
}

/// The egress segment a simulator makes of `input`.
pub fn processed(sim: &str, input: &[u8]) -> Vec<u8> {
    [byoc_sim::runner_marker(sim).as_bytes(), input].concat()
}

/// Publishes one segment at `seq` and reads what comes out, through the gateway: the egress
/// segment after the last one written is asked for first (so the read cannot miss it).
pub async fn round_trip(gw: &TestGateway, urls: &Value, seq: i64, input: &[u8]) -> Answer {
    let next =
        read(gw.client.get(format!("{}/next", urls["subscribe_url"].as_str().expect("egress"))).send().await).await;
    let out: i64 = next.header("lp-trickle-latest").and_then(|v| v.parse().ok()).expect("the next egress number");
    let (client, u) = (gw.client.clone(), urls.clone());
    let reader = actix_web::rt::spawn(async move { subscribe(&client, &u, out).await });
    let posted = gw.publish(urls, seq, input.to_vec()).await;
    assert_eq!(posted.status, 200, "{}", String::from_utf8_lossy(&posted.body));
    reader.await.expect("joined")
}

/// Reads one egress segment at `seq` (`-1`: the next).
pub async fn subscribe(client: &awc::Client, urls: &Value, seq: i64) -> Answer {
    let url = format!("{}/{seq}", urls["subscribe_url"].as_str().expect("subscribe_url"));
    read(client.get(url).send().await).await
}
