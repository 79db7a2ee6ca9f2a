//! One WHIP session's remux: its video frames (Annex B, from the server task's bounded queue) put
//! in FLV's form and handed to the stream's [`Ingest`] (ffmpeg, the keyframe cutter, the ingress
//! channel), as RTMP's media messages are. Holds the stream's publisher slot for as long as it
//! runs; ends when the session does (its queue closes), when the stream ends, or when the remux
//! fails, and always reaps its ffmpeg.

use std::sync::Arc;

use super::super::avc::Avc;
use super::super::flv::Tag;
use super::super::ingest::Ingest;
use super::WhipError;
use crate::stream::Stream;

/// One video frame for the remux.
#[derive(Debug)]
pub(super) struct Media {
    /// The access unit, Annex B.
    pub(super) data: Arc<[u8]>,
    /// Milliseconds since the session's first frame.
    pub(super) ms: u32,
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

/// Feeds frames from `rx` into `ingest` until the session or the stream ends.
pub(super) async fn run(
    stream: Arc<Stream>,
    mut ingest: Ingest,
    mut rx: tokio::sync::mpsc::Receiver<Media>,
    slot: Slot,
) {
    let mut ended = stream.ended_watch();
    let mut avc = Avc::default();
    let mut failed = None;
    loop {
        let media = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = ended.wait_for(|e| *e) => break,
        };
        let frame = avc.frame(&media.data);
        if let Some(config) = frame.config {
            // AVC sequence header: keyframe, packet type 0, composition time 0.
            let mut tag = vec![0x17, 0, 0, 0, 0];
            tag.extend_from_slice(&config);
            if let Err(e) = ingest.tag(Tag::Video, media.ms, &tag).await {
                failed = Some(e.to_string());
                break;
            }
        }
        if frame.avcc.is_empty() {
            continue;
        }
        // AVC NALU packet; WebRTC's H.264 has no B-frames, so the composition time is 0.
        let mut tag = Vec::with_capacity(5 + frame.avcc.len());
        tag.extend_from_slice(&[if frame.keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
        tag.extend_from_slice(&frame.avcc);
        if let Err(e) = ingest.tag(Tag::Video, media.ms, &tag).await {
            failed = Some(e.to_string());
            break;
        }
        stream.edges.lock().whip_video_frames += 1;
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
