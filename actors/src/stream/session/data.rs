//! The data channel: each segment's JSON lines go to the stream's feed (and from there to every
//! `/data` subscriber).

use bytes::Bytes;

use super::Pump;
use crate::protocol::trickle::subscriber::Subscriber;

pub(super) async fn run(pump: Pump, url: String) {
    let s = &pump.settings;
    let mut sub = Subscriber::new(pump.client.clone(), url, s.read_retries, s.retry_pause, s.channel.max_segment_bytes);
    let Some(feed) = pump.stream.data.as_ref() else { return };
    loop {
        let mut segment = match sub.next().await {
            Ok(seg) => seg,
            Err(end) => return pump.channel_ended("data", &end),
        };
        match segment.read_all().await {
            Ok(body) => {
                feed.push_segment(&Bytes::from(body));
            }
            Err(e) => {
                if let Err(end) = sub.broken(segment.seq, &e) {
                    return pump.channel_ended("data", &end);
                }
            }
        }
    }
}
