//! Egress: the orchestrator's output segments, from its live edge, into the stream's egress
//! channel, chunk by chunk as they arrive (a subscriber of the gateway's endpoint gets each chunk
//! as soon as the gateway does). The egress channel numbers segments itself, so its numbering
//! goes on across swaps and a subscriber sees a gap, not a restart.

use std::sync::Arc;
use std::time::Instant;

use super::Pump;
use crate::protocol::trickle::subscriber::Subscriber;
use crate::protocol::trickle::window::Channel;
use crate::protocol::trickle::NEXT;

pub(super) async fn run(pump: Pump, url: String, output: Arc<Channel>) {
    let s = &pump.settings;
    let mut sub = Subscriber::new(pump.client.clone(), url, s.read_retries, s.retry_pause, s.channel.max_segment_bytes);
    let relay = metrics::histogram!(crate::metrics::STREAM_SEGMENT_SECONDS, "direction" => "out");
    loop {
        let mut segment = match sub.next().await {
            Ok(seg) => seg,
            Err(end) => return pump.channel_ended("egress", &end),
        };
        let Some(mut writer) = output.write(NEXT) else { return };
        let t0 = Instant::now();
        let broken = loop {
            match segment.chunk().await {
                Ok(Some(chunk)) => {
                    let n = chunk.len() as u64;
                    if writer.write(chunk).is_err() {
                        // Over the limit (or the stream is ending): the rest of it is dropped.
                        pump.stream.counters.out_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break None;
                    }
                    pump.stream.counters.bytes_out.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        writer.finish();
        pump.stream.counters.segments_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pump.stream.activity.lock().last_output = Some(Instant::now());
        relay.record(t0.elapsed().as_secs_f64());
        if let Some(e) = broken {
            if let Err(end) = sub.broken(segment.seq, &e) {
                return pump.channel_ended("egress", &end);
            }
        }
    }
}
