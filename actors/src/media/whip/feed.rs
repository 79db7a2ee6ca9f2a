//! One WHIP session's remux: its H.264 and Opus frames (from the server task's bounded queue)
//! written as Matroska (`mkv.rs`; the video in AVCC form, `avc.rs`) into the stream's [`Ingest`]
//! (ffmpeg's remux to MPEG-TS, the keyframe cutter, the ingress channel). Holds the stream's
//! publisher slot for as long as it runs; ends when the session does (its queue closes), when
//! the stream ends, or when the remux fails, and always reaps its ffmpeg.

use std::sync::Arc;

use super::super::avc::Avc;
use super::super::ingest::Ingest;
use super::super::mkv::{self, Clusters, Track};
use super::WhipError;
use crate::stream::Stream;

/// One frame for the remux.
#[derive(Debug)]
pub(super) struct Media {
    /// Video (an access unit, Annex B) or audio (an Opus packet).
    pub(super) track: Track,
    /// The frame.
    pub(super) data: Arc<[u8]>,
    /// Milliseconds since the session's first video keyframe.
    pub(super) ms: u64,
}

/// The stream's publisher slot, taken by one WHIP session: an RTMP or another WHIP publisher is
/// refused while it is held. Released (and the report's publisher cleared) when dropped.
pub(super) struct Slot {
    stream: Arc<Stream>,
}

impl Slot {
    /// Takes the slot, or says who holds it.
    pub(super) fn take(stream: &Arc<Stream>) -> Result<Self, WhipError> {
        let mut e = stream.edges.lock();
        if let Some(p) = e.rtmp_publisher.as_ref().map(|p| format!("RTMP {p}")).or_else(|| e.whip_publisher.clone()) {
            return Err(WhipError::Busy { stream: stream.id.clone(), publisher: p });
        }
        e.whip_publisher = Some("connecting".into());
        e.whip_sessions += 1;
        Ok(Self { stream: stream.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stream.edges.lock().whip_publisher = None;
    }
}

/// Feeds frames from `rx` into `ingest` until the session or the stream ends. `audio`: the
/// session sends Opus (the answer took it), so the Matroska declares an audio track.
pub(super) async fn run(
    stream: Arc<Stream>,
    mut ingest: Ingest,
    mut rx: tokio::sync::mpsc::Receiver<Media>,
    slot: Slot,
    audio: bool,
) {
    let mut ended = stream.ended_watch();
    let mut avc = Avc::default();
    let mut clusters = Clusters::default();
    let mut started = false;
    let mut failed = None;
    loop {
        let media = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = ended.wait_for(|e| *e) => break,
        };
        let mut bytes = Vec::new();
        match media.track {
            Track::Video => {
                let frame = avc.frame(&media.data);
                if !started {
                    // The header needs the decoder configuration: it comes with the first
                    // keyframe (the session sends nothing before one).
                    let Some(config) = frame.config.as_ref() else { continue };
                    bytes = mkv::header(config, audio);
                    started = true;
                }
                if frame.avcc.is_empty() {
                    continue;
                }
                bytes.extend(clusters.block(Track::Video, media.ms, frame.keyframe, &frame.avcc));
                stream.edges.lock().whip_video_frames += 1;
            }
            Track::Audio if started && audio => {
                bytes = clusters.block(Track::Audio, media.ms, true, &media.data);
                stream.edges.lock().whip_audio_frames += 1;
            }
            Track::Audio => continue,
        }
        if let Err(e) = ingest.bytes(&bytes).await {
            failed = Some(e.to_string());
            break;
        }
    }
    // Closing the queue tells the server task to drop the session (the stream ended, or the
    // remux failed).
    drop(rx);
    ingest.finish().await;
    if let Some(e) = failed {
        tracing::info!(stream = %stream.id, error = %e, "whip ingest failed");
        stream.edges.lock().whip_last_error = Some(e);
    }
    drop(slot);
}
