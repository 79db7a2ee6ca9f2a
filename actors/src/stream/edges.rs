//! The media edges of a stream as the stream core sees them: the settings the RTMP and WHIP
//! ingest and the RTMP outputs run with (`crate::media` runs them) and what they report. Plain data, so the stream
//! core does not depend on the media code that fills it.

use std::time::Duration;

use serde::Serialize;

/// How the media edges run (config `[streams]`: `rtmp_addr`, `whip_udp_addr`, `ffmpeg`).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// The RTMP ingest's port, once its listener is bound (`None`: no RTMP ingest, and
    /// `StreamUrls` carry no `rtmp_url`).
    pub rtmp_port: Option<u16>,
    /// The ffmpeg program (remuxes; the gateway never decodes video).
    pub ffmpeg: String,
    /// The shortest ingest segment: a keyframe sooner than this after the segment's first does
    /// not cut.
    pub min_segment: Duration,
    /// First pause before an RTMP output is restarted; doubled up to `output_retry_max`.
    pub output_retry_min: Duration,
    /// Longest pause between two restarts of an RTMP output.
    pub output_retry_max: Duration,
    /// An RTMP connection that sends nothing for this long is closed.
    pub rtmp_idle_timeout: Duration,
    /// Whether WHIP ingest is served (its UDP socket is bound): `StreamUrls` carry a `whip_url`.
    pub whip: bool,
    /// A WHIP session whose ICE and DTLS have not completed within this is dropped.
    pub whip_connect_timeout: Duration,
    /// How often a WHIP publisher is asked for a keyframe (an RTCP PLI): browsers send one only
    /// when asked, and ingest segments are cut at keyframes.
    pub whip_keyframe_interval: Duration,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            rtmp_port: None,
            ffmpeg: "ffmpeg".into(),
            min_segment: Duration::from_secs(1),
            output_retry_min: Duration::from_millis(500),
            output_retry_max: Duration::from_secs(30),
            rtmp_idle_timeout: Duration::from_secs(30),
            whip: false,
            whip_connect_timeout: Duration::from_secs(15),
            whip_keyframe_interval: Duration::from_secs(2),
        }
    }
}

/// Most RTMP outputs per stream.
pub const MAX_OUTPUTS: usize = 8;

/// What a stream's media edges report (`GET /admin/streams/{id}`: `media`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EdgeReport {
    /// The RTMP publisher connected now (its address), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp_publisher: Option<String>,
    /// RTMP publishers accepted so far.
    pub rtmp_sessions: u64,
    /// Segments the RTMP ingest cut (each starts at a keyframe).
    pub rtmp_segments: u64,
    /// Why the last RTMP ingest ended, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp_last_error: Option<String>,
    /// The WHIP publisher connected now (its address, or `connecting`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whip_publisher: Option<String>,
    /// WHIP sessions accepted so far.
    pub whip_sessions: u64,
    /// Segments cut from WHIP ingest (each starts at a keyframe).
    pub whip_segments: u64,
    /// Video frames a WHIP publisher sent into the remux.
    pub whip_video_frames: u64,
    /// Video frames dropped: before the first keyframe, or because the remux was behind (then up
    /// to the next keyframe).
    pub whip_video_dropped: u64,
    /// Audio (Opus) frames a WHIP publisher sent into the remux.
    pub whip_audio_frames: u64,
    /// Audio frames dropped because the remux was behind.
    pub whip_audio_dropped: u64,
    /// Why the last WHIP session ended, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whip_last_error: Option<String>,
    /// The RTMP outputs.
    pub outputs: Vec<OutputReport>,
}

/// One RTMP output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OutputReport {
    /// The destination (its path, which may hold a stream key, is not shown).
    pub destination: String,
    /// Whether ffmpeg is pushing to it now.
    pub connected: bool,
    /// Times it was (re)started.
    pub starts: u64,
    /// Segments sent to it.
    pub segments: u64,
    /// Why it last stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A destination as shown to operators: scheme, host and port only (an RTMP path often holds
/// the stream key).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(invalid)".into(),
    }
}

/// The RTMP ingest's base URL: the host of the gateway's public URL (`base`) on the RTMP port.
pub fn rtmp_base(base: &str, port: u16) -> String {
    let host =
        url::Url::parse(base).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| "localhost".into());
    format!("rtmp://{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rtmp_url_is_on_the_public_host_and_outputs_hide_their_key() {
        assert_eq!(rtmp_base("https://gw.example:8443", 1935), "rtmp://gw.example:1935");
        assert_eq!(rtmp_base("http://[::1]:9", 1), "rtmp://[::1]:1");
        assert_eq!(redact("rtmp://live.example/app/secret-key"), "rtmp://live.example");
        assert_eq!(redact("rtmps://live.example:443/app/k"), "rtmps://live.example:443");
    }
}
