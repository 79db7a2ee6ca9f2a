//! The `[streams]` section: live streams (`/process/stream/*`). Their global bound is
//! `limits.max_streams`.

use std::collections::BTreeMap;
use std::time::Duration;

use byoc_actors::capability::Capability;
use byoc_actors::protocol::trickle::window;
use byoc_actors::stream::{StreamSettings, SwapBound};
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Live streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Streams {
    /// The gateway's public base URL in the URLs a start answers with (`https://gw.example`);
    /// empty: the scheme and `Host` of the start request.
    pub public_url: String,
    /// No event from a stream's runner for this long moves the stream to another orchestrator
    /// (go-livepeer: 30 s).
    #[serde(with = "humantime_serde")]
    pub event_timeout: Duration,
    /// No output segment for this long while input flows moves the stream ("0s": never).
    #[serde(with = "humantime_serde")]
    pub output_timeout: Duration,
    /// Swaps allowed within `swap_window`; one more ends the stream.
    pub max_swaps: u32,
    /// The window of `max_swaps`.
    #[serde(with = "humantime_serde")]
    pub swap_window: Duration,
    /// Orchestrators tried when a stream starts or swaps (at least the capability policy's
    /// `max_attempts`).
    pub start_attempts: u32,
    /// How often a running stream's balance is checked (and topped up when due) on a priced
    /// capability.
    #[serde(with = "humantime_serde")]
    pub payment_interval: Duration,
    /// Keep-alive period on the control channel (go-livepeer: 10 s).
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// Largest media segment (each way).
    pub max_segment_bytes: usize,
    /// Segments each of a stream's media channels keeps (go-livepeer: 5).
    pub window: usize,
    /// Data lines kept for `/data` subscribers that lag.
    pub data_buffer_lines: usize,
    /// Ingress segments on their way to the orchestrator at once before the stream moves
    /// (go-livepeer: 3).
    pub max_inflight_segments: u64,
    /// Ended streams kept for their `/status` and the admin API.
    pub ended_kept: usize,
    /// Answer CORS preflights (`OPTIONS /process/stream/...`) and allow any origin (go-livepeer's
    /// `LIVE_AI_ALLOW_CORS`).
    pub allow_cors: bool,
    /// Per-capability overrides of `event_timeout` and `output_timeout`.
    pub capabilities: BTreeMap<String, StreamTimeouts>,
    /// RTMP ingest listen address (`rtmp://{host}:{port}/{stream_id}` in `StreamUrls`); empty:
    /// no RTMP ingest and no `rtmp_url`.
    pub rtmp_addr: String,
    /// WHIP ingest's UDP address (ICE, DTLS, SRTP for every WHIP session): the one candidate of
    /// each SDP answer, so it must be an address publishers reach (not 0.0.0.0); port 0 picks a
    /// free one. Empty: no WHIP ingest and no `whip_url`.
    pub whip_udp_addr: String,
    /// The ffmpeg program that remuxes RTMP ingest to MPEG-TS and the output to FLV.
    pub ffmpeg: String,
}

/// Timeouts of one capability's streams.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamTimeouts {
    /// Its event timeout.
    #[serde(with = "humantime_serde")]
    pub event_timeout: Option<Duration>,
    /// Its output timeout.
    #[serde(with = "humantime_serde")]
    pub output_timeout: Option<Duration>,
}

impl Default for Streams {
    fn default() -> Self {
        let s = StreamSettings::default();
        Self {
            public_url: String::new(),
            event_timeout: s.event_timeout,
            output_timeout: s.output_timeout,
            max_swaps: s.swap_bound.max_swaps,
            swap_window: s.swap_bound.window,
            start_attempts: s.start_attempts,
            payment_interval: s.payment_interval,
            keepalive: s.keepalive,
            max_segment_bytes: s.channel.max_segment_bytes,
            window: s.channel.window,
            data_buffer_lines: s.data_buffer_lines,
            max_inflight_segments: s.max_inflight_segments,
            ended_kept: s.ended_kept,
            allow_cors: false,
            capabilities: BTreeMap::new(),
            rtmp_addr: "127.0.0.1:1935".into(),
            whip_udp_addr: "127.0.0.1:0".into(),
            ffmpeg: s.edges.ffmpeg.clone(),
        }
    }
}

fn invalid(m: String) -> ConfigError {
    ConfigError::Invalid(m)
}

impl Streams {
    /// Checks the section and builds the settings streams run with.
    pub(super) fn settings(&self, max_streams: usize) -> Result<StreamSettings, ConfigError> {
        for (name, d) in [
            ("streams.event_timeout", self.event_timeout),
            ("streams.swap_window", self.swap_window),
            ("streams.payment_interval", self.payment_interval),
            ("streams.keepalive", self.keepalive),
        ] {
            if d.is_zero() {
                return Err(invalid(format!("{name} must be positive")));
            }
        }
        for (name, n) in [
            ("streams.start_attempts", self.start_attempts as usize),
            ("streams.max_segment_bytes", self.max_segment_bytes),
            ("streams.window", self.window),
            ("streams.data_buffer_lines", self.data_buffer_lines),
            ("streams.max_inflight_segments", self.max_inflight_segments as usize),
        ] {
            if n == 0 {
                return Err(invalid(format!("{name} must be at least 1")));
            }
        }
        if self.window > 64 {
            return Err(invalid("streams.window must be at most 64".into()));
        }
        let public_url = self.public_url.trim().trim_end_matches('/');
        if !public_url.is_empty() {
            let ok = url::Url::parse(public_url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.query().is_none());
            if !ok {
                return Err(invalid(format!(
                    "streams.public_url must be an http(s) URL such as https://gateway.example, got '{public_url}'"
                )));
            }
        }
        if self.ffmpeg.trim().is_empty() {
            return Err(invalid("streams.ffmpeg must name the ffmpeg program".into()));
        }
        let mut capability_timeouts = std::collections::HashMap::new();
        for (name, t) in &self.capabilities {
            let cap = Capability::new(name).map_err(|e| invalid(format!("streams.capabilities.{name}: {e}")))?;
            if t.event_timeout.is_some_and(|d| d.is_zero()) {
                return Err(invalid(format!("streams.capabilities.{name}.event_timeout must be positive")));
            }
            capability_timeouts.insert(cap, (t.event_timeout, t.output_timeout));
        }
        Ok(StreamSettings {
            max_streams,
            event_timeout: self.event_timeout,
            output_timeout: self.output_timeout,
            capability_timeouts,
            swap_bound: SwapBound { max_swaps: self.max_swaps, window: self.swap_window },
            start_attempts: self.start_attempts,
            payment_interval: self.payment_interval,
            keepalive: self.keepalive,
            channel: window::Limits { window: self.window, max_segment_bytes: self.max_segment_bytes },
            data_buffer_lines: self.data_buffer_lines,
            max_inflight_segments: self.max_inflight_segments,
            ended_kept: self.ended_kept,
            allow_cors: self.allow_cors,
            edges: byoc_actors::stream::EdgeSettings { ffmpeg: self.ffmpeg.trim().to_string(), ..Default::default() },
            ..StreamSettings::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_go_livepeers_and_valid() {
        let s = Streams::default().settings(10).expect("valid");
        assert_eq!(
            (s.event_timeout, s.keepalive, s.max_inflight_segments),
            (Duration::from_secs(30), Duration::from_secs(10), 3)
        );
        assert_eq!(s.max_streams, 10);
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let bad = |f: fn(&mut Streams), key: &str| {
            let mut s = Streams::default();
            f(&mut s);
            match s.settings(1) {
                Err(ConfigError::Invalid(m)) => assert!(m.contains(key), "{m}"),
                other => panic!("{key}: {other:?}"),
            }
        };
        bad(|s| s.event_timeout = Duration::ZERO, "streams.event_timeout");
        bad(|s| s.window = 0, "streams.window");
        bad(|s| s.public_url = "ftp://x".into(), "streams.public_url");
        bad(|s| s.public_url = "gateway.example".into(), "streams.public_url");
        bad(
            |s| {
                s.capabilities.insert("bad name".into(), StreamTimeouts::default());
            },
            "streams.capabilities.bad name",
        );
    }

    #[test]
    fn capability_timeouts_override() {
        let mut s = Streams::default();
        s.capabilities.insert(
            "video-to-video".into(),
            StreamTimeouts { event_timeout: Some(Duration::from_secs(5)), output_timeout: None },
        );
        let settings = s.settings(1).expect("valid");
        let cap = Capability::new("video-to-video").expect("name");
        assert_eq!(settings.capability_timeouts.get(&cap), Some(&(Some(Duration::from_secs(5)), None)));
    }
}
