//! One WHIP publisher's connection: a `str0m` [`Rtc`] (ICE lite, DTLS, SRTP, depacketized
//! frames) and what the server task needs to drive it: the datagrams it wants sent, when it next
//! needs time, its video frames into the remux's bounded queue, and why it ended. The keyframe
//! policy lives here: a keyframe is asked for every `whip_keyframe_interval` (browsers send one
//! only when asked, and segments are cut at keyframes) and at once after frames were dropped, and
//! frames are dropped from a full queue up to the next keyframe (a decoder cannot use them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use super::super::mkv::Track;
use super::feed::Media;
use crate::stream::{EdgeSettings, Stream};

/// Longest a connected session may go without a datagram from its publisher.
const IDLE: Duration = Duration::from_secs(30);

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// The publisher's `DELETE`.
    Deleted,
    /// ICE and DTLS did not complete in time.
    NeverConnected,
    /// ICE lost the publisher, or it went quiet.
    Disconnected,
    /// The remux ended (the stream ended, or ffmpeg failed).
    RemuxGone,
    /// `str0m` failed.
    Failed(String),
}

impl End {
    /// What the report says, for the ends that are failures.
    pub(super) fn error(&self) -> Option<String> {
        match self {
            End::Deleted | End::RemuxGone => None,
            End::NeverConnected => Some("ICE and DTLS did not complete in time".into()),
            End::Disconnected => Some("the publisher disconnected".into()),
            End::Failed(e) => Some(format!("WebRTC: {e}")),
        }
    }
}

/// One publisher.
pub(super) struct Session {
    pub(super) id: String,
    pub(super) stream: Arc<Stream>,
    pub(super) rtc: Rtc,
    frames: Sender<Media>,
    created: Instant,
    connected: bool,
    last_input: Instant,
    /// Where the last datagram came from.
    last_source: Option<SocketAddr>,
    video: Option<Mid>,
    /// When the first video keyframe arrived: time 0 of the remux.
    base: Option<Instant>,
    video_clock: Option<Clock>,
    audio_clock: Option<Clock>,
    /// Frames are dropped up to the next keyframe (after a drop, or before the first keyframe).
    want_keyframe: bool,
    next_keyframe_ask: Instant,
    pub(super) end: Option<End>,
}

impl Session {
    pub(super) fn new(id: String, stream: Arc<Stream>, rtc: Rtc, frames: Sender<Media>, now: Instant) -> Self {
        Self {
            id,
            stream,
            rtc,
            frames,
            created: now,
            connected: false,
            last_input: now,
            last_source: None,
            video: None,
            base: None,
            video_clock: None,
            audio_clock: None,
            want_keyframe: true,
            next_keyframe_ask: now,
            end: None,
        }
    }

    /// Hands `input` to the `Rtc`.
    pub(super) fn input(&mut self, input: Input<'_>, now: Instant) {
        if let Input::Receive(_, r) = &input {
            self.last_input = now;
            self.last_source = Some(r.source);
        }
        if let Err(e) = self.rtc.handle_input(input) {
            self.finish(End::Failed(e.to_string()));
        }
    }

    /// Time passes: the `Rtc`'s timers, the keyframe requests, the connect and idle bounds.
    pub(super) fn tick(&mut self, now: Instant, settings: &EdgeSettings) {
        if self.frames.is_closed() {
            return self.finish(End::RemuxGone);
        }
        if !self.connected && now.duration_since(self.created) > settings.whip_connect_timeout {
            return self.finish(End::NeverConnected);
        }
        if self.connected && now.duration_since(self.last_input) > IDLE {
            return self.finish(End::Disconnected);
        }
        if self.connected && now >= self.next_keyframe_ask {
            self.ask_keyframe();
            self.next_keyframe_ask = now + settings.whip_keyframe_interval;
        }
        self.input(Input::Timeout(now), now);
    }

    /// Drains the `Rtc`'s output: datagrams into `out`, events handled; the next time it needs.
    pub(super) fn poll(&mut self, out: &mut Vec<(SocketAddr, Vec<u8>)>) -> Option<Instant> {
        while self.end.is_none() {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    return Some(if self.connected { t.min(self.next_keyframe_ask) } else { t });
                }
                Ok(Output::Transmit(t)) => out.push((t.destination, t.contents.to_vec())),
                Ok(Output::Event(e)) => self.event(e),
                Err(e) => self.finish(End::Failed(e.to_string())),
            }
        }
        None
    }

    pub(super) fn finish(&mut self, end: End) {
        if self.end.is_none() {
            self.rtc.disconnect();
            self.end = Some(end);
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                self.connected = true;
                if let Some(peer) = self.last_source {
                    self.stream.edges.lock().whip_publisher = Some(peer.to_string());
                }
                tracing::info!(stream = %self.stream.id, session = %self.id, "whip publisher connected");
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => self.finish(End::Disconnected),
            Event::MediaAdded(m) if m.kind == MediaKind::Video && self.video.is_none() => self.video = Some(m.mid),
            Event::MediaData(d) => self.media(d),
            _ => {}
        }
    }

    fn media(&mut self, d: MediaData) {
        if Some(d.mid) != self.video {
            return self.audio(d);
        }
        let keyframe = d.is_keyframe();
        if !d.contiguous {
            // Packets were lost: the decoder needs a fresh start.
            self.want_keyframe = true;
            self.ask_keyframe();
        }
        if self.want_keyframe && !keyframe {
            self.stream.edges.lock().whip_video_dropped += 1;
            return;
        }
        self.want_keyframe = false;
        let base = *self.base.get_or_insert(d.network_time);
        let ms = self.video_clock.get_or_insert_with(|| Clock::new(base, &d)).ms(&d);
        match self.frames.try_send(Media { track: Track::Video, data: d.data, ms }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stream.edges.lock().whip_video_dropped += 1;
                self.want_keyframe = true;
                self.ask_keyframe();
            }
            Err(TrySendError::Closed(_)) => self.finish(End::RemuxGone),
        }
    }

    /// An Opus packet: into the remux once the video started (time 0 is its first keyframe).
    fn audio(&mut self, d: MediaData) {
        let Some(base) = self.base else { return };
        let ms = self.audio_clock.get_or_insert_with(|| Clock::new(base, &d)).ms(&d);
        match self.frames.try_send(Media { track: Track::Audio, data: d.data, ms }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.stream.edges.lock().whip_audio_dropped += 1,
            Err(TrySendError::Closed(_)) => self.finish(End::RemuxGone),
        }
    }

    fn ask_keyframe(&mut self) {
        let Some(mid) = self.video else { return };
        if let Some(mut w) = self.rtc.writer(mid) {
            // Fails only before the first packet told str0m the publisher's SSRC: asked again
            // at the next interval.
            let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
        }
    }
}

/// One track's timestamps in the remux: its RTP time since its first frame, from when that frame
/// arrived after the session's time 0 (the tracks' RTP clocks are unrelated; their arrival puts
/// them on one time line, close enough for lip sync on a live feed).
struct Clock {
    first_rtp: f64,
    offset_ms: u64,
}

impl Clock {
    fn new(base: Instant, first: &MediaData) -> Self {
        let offset = first.network_time.saturating_duration_since(base);
        Self { first_rtp: first.time.as_seconds(), offset_ms: offset.as_millis() as u64 }
    }

    fn ms(&self, d: &MediaData) -> u64 {
        let since = (d.time.as_seconds() - self.first_rtp).max(0.0);
        self.offset_ms + (since * 1000.0) as u64
    }
}
