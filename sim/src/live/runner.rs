//! The runner of one simulated stream: what a BYOC stream worker does behind go-livepeer's
//! orchestrator, on the stream's trickle channels. It reads the control channel (params and
//! keep-alives), publishes a status event every `stream_event_interval_ms` and a data line every
//! `stream_data_interval_ms`, turns every ingress segment into an egress segment as it arrives (a
//! marker line naming the simulator, then the input's bytes; or, with `stream_video_filter`, the
//! video filtered and re-encoded by ffmpeg, `transform.rs`), and, on a priced capability that
//! takes tickets, debits the stream's time and removes a stream left unpaid for two rounds. Knobs
//! are read as it goes, so a test can turn a fault on mid-stream.

use std::sync::Arc;
use std::time::Duration;

use byoc_actors::protocol::header::JobRequest;
use byoc_actors::protocol::trickle::window::{Channel, ReadStart};
use byoc_actors::protocol::trickle::NEXT;
use byoc_actors::stream::request::Features;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::push;
use crate::knobs::Knobs;
use crate::state::SimState;

/// The marker line an egress segment starts with.
pub fn marker(sim: &str) -> String {
    format!("processed-by:{sim}\n")
}

/// Child tasks, ended with the runner.
struct Children(Vec<JoinHandle<()>>);

impl Drop for Children {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

pub(super) async fn run(
    state: Arc<SimState>,
    id: String,
    header: JobRequest,
    features: Features,
    params: Arc<Mutex<Option<Value>>>,
) {
    fn spawn(f: impl std::future::Future<Output = ()> + 'static) -> JoinHandle<()> {
        actix_web::rt::spawn(f)
    }
    let mut children = vec![
        spawn(control(state.clone(), id.clone(), params.clone())),
        spawn(events(state.clone(), id.clone(), header.capability.clone(), params.clone())),
        spawn(debit(state.clone(), id.clone(), header.clone())),
    ];
    if features.data {
        children.push(spawn(data(state.clone(), id.clone(), header.capability.clone())));
    }
    if features.ingress && features.egress {
        children.push(spawn(media(state.clone(), id.clone(), header.capability.clone())));
    }
    let _children = Children(children);
    std::future::pending::<()>().await;
}

fn knobs(state: &SimState, capability: &str) -> Knobs {
    state.caps.lock().get(capability).map(|c| c.knobs.clone()).unwrap_or_default()
}

/// Reads one whole segment of `name` at `seq`; `None` when the channel is gone or closed.
async fn read(state: &SimState, name: &str, seq: &mut i64) -> Option<Vec<u8>> {
    loop {
        let ch = state.live.channel(name)?;
        match ch.read(*seq) {
            ReadStart::Segment { mut reader, .. } => {
                *seq = reader.seq() + 1;
                let mut body = Vec::new();
                while let Some(c) = reader.next().await {
                    body.extend_from_slice(&c);
                }
                return Some(body);
            }
            ReadStart::Missing { closed: true, .. } => return None,
            ReadStart::Missing { latest, .. } => *seq = latest,
        }
    }
}

/// Publishes one whole segment on `ch`.
fn publish(ch: &Arc<Channel>, body: Bytes) -> bool {
    match ch.write(NEXT) {
        Some(mut w) => {
            let ok = w.write(body).is_ok();
            w.finish();
            ok
        }
        None => false,
    }
}

async fn control(state: Arc<SimState>, id: String, params: Arc<Mutex<Option<Value>>>) {
    let name = format!("{id}-control");
    let mut seq = NEXT;
    while let Some(body) = read(&state, &name, &mut seq).await {
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if msg == json!({"keep": "alive"}) {
            state.live.stats.lock().keepalives += 1;
            continue;
        }
        push(&mut state.live.stats.lock().control_params, String::from_utf8_lossy(&body).into_owned());
        *params.lock() = Some(msg);
    }
}

async fn events(state: Arc<SimState>, id: String, capability: String, params: Arc<Mutex<Option<Value>>>) {
    let name = format!("{id}-events");
    let mut n = 0u64;
    loop {
        let k = knobs(&state, &capability);
        tokio::time::sleep(Duration::from_millis(k.stream_event_interval_ms)).await;
        if k.stream_events_stop {
            continue;
        }
        let Some(ch) = state.live.channel(&name) else { return };
        n += 1;
        let event = json!({
            "type": "status",
            "stream_id": id,
            "sim": state.name,
            "n": n,
            "inference_status": {"fps": 30.0, "last_params": params.lock().clone()},
        });
        if !publish(&ch, Bytes::from(event.to_string())) {
            return;
        }
        state.live.stats.lock().events += 1;
    }
}

async fn data(state: Arc<SimState>, id: String, capability: String) {
    let name = format!("{id}-data");
    let mut n = 0u64;
    loop {
        let k = knobs(&state, &capability);
        tokio::time::sleep(Duration::from_millis(k.stream_data_interval_ms)).await;
        let Some(ch) = state.live.channel(&name) else { return };
        n += 1;
        let line = format!("{}\n", json!({"sim": state.name, "stream_id": id, "n": n}));
        if !publish(&ch, Bytes::from(line)) {
            return;
        }
        state.live.stats.lock().data_lines += 1;
    }
}

/// Each ingress segment becomes an egress segment, chunk by chunk as it arrives.
async fn media(state: Arc<SimState>, id: String, capability: String) {
    let out = format!("{id}-out");
    let mut seq = NEXT;
    loop {
        let Some(input) = state.live.channel(&id) else { return };
        let mut reader = match input.read(seq) {
            ReadStart::Segment { reader, .. } => reader,
            ReadStart::Missing { closed: true, .. } => return,
            ReadStart::Missing { latest, .. } => {
                seq = latest;
                continue;
            }
        };
        seq = reader.seq() + 1;
        let Some(first) = reader.next().await else { continue };
        state.live.stats.lock().ingress_segments += 1;
        let k = knobs(&state, &capability);
        let writing = !k.stream_output_stop;
        let mut writer = match state.live.channel(&out) {
            Some(ch) if writing => ch.write(NEXT),
            _ => None,
        };
        if let Some(vf) = k.stream_video_filter.as_deref() {
            super::transform::filter(reader, first, vf, writer.as_mut()).await;
            if let Some(w) = writer {
                w.finish();
                state.live.stats.lock().egress_segments += 1;
            }
            continue;
        }
        if let Some(w) = writer.as_mut() {
            let _ = w.write(Bytes::from(marker(&state.name)));
            let _ = w.write(first);
        }
        while let Some(chunk) = reader.next().await {
            if let Some(w) = writer.as_mut() {
                let _ = w.write(chunk);
            }
        }
        if let Some(w) = writer {
            w.finish();
            state.live.stats.lock().egress_segments += 1;
        }
    }
}

/// go-livepeer's `monitorOrchStream`: a priced stream's time is debited every round, and a second
/// round with a negative balance removes it (the 3.6a correction: any second round).
async fn debit(state: Arc<SimState>, id: String, header: JobRequest) {
    let mut negative_once = false;
    loop {
        let k = knobs(&state, &header.capability);
        let every = Duration::from_millis(k.stream_debit_interval_ms);
        tokio::time::sleep(every).await;
        if k.price_per_unit <= 0 || !k.tickets {
            continue;
        }
        let per_second = k.price_per_unit as f64 / k.pixels_per_unit.max(1) as f64;
        let balance = {
            let mut ledger = state.payments.lock();
            let seconds = if k.stream_debit_seconds > 0 { k.stream_debit_seconds as f64 } else { every.as_secs_f64() };
            ledger.debit(&header.sender, &header.capability, seconds, per_second);
            ledger.balance(&header.sender, &header.capability, k.balance)
        };
        if balance >= 0 {
            continue;
        }
        if !negative_once {
            negative_once = true;
            continue;
        }
        state.live.stats.lock().removed_unpaid += 1;
        state.live.remove(&id);
        return;
    }
}
