//! The runner's video processing (knob `stream_video_filter`): one ffmpeg per segment, fed the
//! ingress segment as it arrives and read back as it is produced, so a segment streams through
//! as a real runner's does. The video is filtered and re-encoded (x264, a keyframe first),
//! audio is copied and timestamps are kept (`-copyts`), so the output of consecutive segments
//! plays as one stream, and across a swap too.

use std::process::Stdio;

use byoc_actors::protocol::trickle::window::{SegmentReader, SegmentWriter};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Runs `segment` through ffmpeg with `filter` into `out` (when given). Returns whether ffmpeg
/// ran and exited well.
pub(super) async fn filter(
    mut segment: SegmentReader,
    first: Bytes,
    filter: &str,
    mut out: Option<&mut SegmentWriter>,
) -> bool {
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0", "-vf", filter])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-c:a", "copy"])
        .args(["-copyts", "-muxdelay", "0", "-f", "mpegts", "-flush_packets", "1", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else { return false };
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else { return false };
    let feed = async move {
        if stdin.write_all(&first).await.is_err() {
            return;
        }
        while let Some(chunk) = segment.next().await {
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // stdin closes here: ffmpeg flushes and exits.
    };
    let drain = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(w) = out.as_mut() {
                        let _ = w.write(Bytes::copy_from_slice(&buf[..n]));
                    }
                }
            }
        }
    };
    tokio::join!(feed, drain);
    matches!(child.wait().await, Ok(s) if s.success())
}
