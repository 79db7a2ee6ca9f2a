//! The control channel: the stream's latest params published once the session starts (3 tries
//! 100 ms apart, as go-livepeer), then `{"keep":"alive"}` every `streams.keepalive`. A channel
//! that is gone or closed moves the stream; other failures are retried at the next keep-alive.

use std::time::Duration;

use bytes::Bytes;

use super::Pump;
use crate::protocol::trickle::publisher::{PublishError, Publisher};

const KEEPALIVE: &[u8] = br#"{"keep":"alive"}"#;
const REPLAY_TRIES: u32 = 3;
const REPLAY_PAUSE: Duration = Duration::from_millis(100);

pub(super) async fn run(pump: Pump, url: String) {
    let mut publisher = Publisher::new(pump.client.clone(), url, "application/json", false);
    let params = pump.stream.params.lock().clone();
    if let Some(params) = params {
        let mut last = None;
        for i in 0..REPLAY_TRIES {
            match publisher.publish(params.clone()).await {
                Ok(_) => {
                    last = None;
                    tracing::debug!(stream = %pump.stream.id, "params replayed on the control channel");
                    break;
                }
                Err(PublishError::End(end)) => return pump.channel_ended("control", &end),
                Err(e) => last = Some(e),
            }
            if i + 1 < REPLAY_TRIES {
                tokio::time::sleep(REPLAY_PAUSE).await;
            }
        }
        if let Some(e) = last {
            return pump.trigger(
                crate::stream::machine::SwapReason::ChannelFailing,
                format!("control channel: the params could not be replayed: {e}"),
            );
        }
    }
    loop {
        tokio::time::sleep(pump.settings.keepalive).await;
        match publisher.publish(Bytes::from_static(KEEPALIVE)).await {
            Ok(_) => {}
            Err(PublishError::End(end)) => return pump.channel_ended("control", &end),
            Err(e) => {
                tracing::debug!(stream = %pump.stream.id, error = %e, "control keep-alive failed; retried at the next")
            }
        }
    }
}
