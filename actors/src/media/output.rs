//! RTMP outputs: each of a stream's `rtmp_output` destinations gets the egress segments through
//! its own ffmpeg (`-f mpegts -i pipe:0 -c:v copy -c:a copy|aac -f flv <url>`: the video is not
//! re-encoded; AAC audio is passed through and other audio (a WHIP publisher's Opus, which FLV
//! cannot carry) re-encoded to AAC, as go-livepeer's `ffmpegOutput` does for the client's
//! outputs; the segment's PMT tells which). An output follows the egress channel on its
//! own reader, so a slow or dead destination never holds the stream or the other outputs (it
//! skips to the live edge when it falls out of the window). When the destination drops, ffmpeg
//! exits and is restarted after a back-off (doubling up to `output_retry_max`, reset after a
//! minute of good running), from the next segment, which starts at a keyframe. Every ffmpeg is
//! reaped when the stream ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::ffmpeg::Ffmpeg;
use super::ts;
use crate::protocol::trickle::window::{Channel, ReadStart, SegmentReader};
use crate::protocol::trickle::NEXT;
use crate::stream::edges::redact;
use crate::stream::{EdgeSettings, OutputReport, Stream, Streams};

/// Bound on one write into an output's ffmpeg (a destination that stalls it).
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Bound on ffmpeg's exit once its input ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// Most of a segment's head read for its tables before ffmpeg starts.
const HEAD_MAX: usize = 64 << 10;
/// Running this long resets the back-off.
const GOOD_RUN: Duration = Duration::from_secs(60);

/// Starts the RTMP outputs of stream `id` (its start's `rtmp_output`); they run until it ends.
pub fn start_outputs(streams: &Streams, id: &str) {
    let Some(stream) = streams.get(id) else { return };
    let Some(egress) = stream.egress.clone() else { return };
    let settings = streams.settings().edges.clone();
    for (index, dest) in stream.rtmp_outputs.iter().enumerate() {
        stream.edges.lock().outputs.push(OutputReport { destination: redact(dest), ..OutputReport::default() });
        actix::spawn(run(stream.clone(), egress.clone(), index, dest.clone(), settings.clone()));
    }
}

/// How one ffmpeg's run ended.
enum Stop {
    /// The stream ended or its egress closed.
    Ended,
    /// ffmpeg failed (the destination dropped, refused or stalled).
    Failed(String),
}

async fn run(stream: Arc<Stream>, egress: Arc<Channel>, index: usize, dest: String, settings: EdgeSettings) {
    let mut ended = stream.ended_watch();
    let mut pause = settings.output_retry_min;
    let mut seq = NEXT;
    loop {
        // The first segment first: no connection to the destination before there is video.
        let first = tokio::select! {
            r = next_segment(&egress, &mut seq) => r,
            _ = ended.wait_for(|e| *e) => None,
        };
        let Some(mut first) = first else { return };
        // The segment's tables say whether its audio can go to FLV as it is.
        let mut head = Vec::new();
        while ts::audio_is_aac(&head).is_none() && head.len() < HEAD_MAX {
            match first.next().await {
                Some(chunk) => head.extend_from_slice(&chunk),
                None => break,
            }
        }
        let audio = if ts::audio_is_aac(&head).unwrap_or(true) { "copy" } else { "aac" };
        let args: Vec<String> = [
            "-fflags",
            "+genpts",
            "-probesize",
            "65536",
            "-analyzeduration",
            "1000000",
            "-f",
            "mpegts",
            "-i",
            "pipe:0",
            "-map",
            "0:v?",
            "-map",
            "0:a?",
            "-c:v",
            "copy",
            // FLV carries AAC, not a WHIP publisher's Opus: other audio is re-encoded (as
            // go-livepeer does for the client's outputs; the one transcode, and ffmpeg's).
            "-c:a",
            audio,
            "-b:a",
            "128k",
            "-f",
            "flv",
            "-flvflags",
            "no_duration_filesize",
        ]
        .into_iter()
        .map(String::from)
        .chain(std::iter::once(dest.clone()))
        .collect();
        let stop = match Ffmpeg::spawn(&settings.ffmpeg, &args, false) {
            Err(e) => Stop::Failed(format!("ffmpeg could not be started ({}): {e}", settings.ffmpeg)),
            Ok(mut ffmpeg) => {
                report(&stream, index, |r| {
                    r.connected = true;
                    r.starts += 1;
                });
                let began = Instant::now();
                let stop = tokio::select! {
                    s = pump(&mut ffmpeg, head, first, &egress, &mut seq, &stream, index) => s,
                    _ = ended.wait_for(|e| *e) => Stop::Ended,
                };
                let tail = ffmpeg.tail();
                let status = ffmpeg.finish(EXIT_WAIT).await;
                if began.elapsed() >= GOOD_RUN {
                    pause = settings.output_retry_min;
                }
                match stop {
                    Stop::Failed(why) => Stop::Failed(format!("{why}; ffmpeg {status:?}: {tail}")),
                    s => s,
                }
            }
        };
        report(&stream, index, |r| r.connected = false);
        match stop {
            Stop::Ended => return,
            Stop::Failed(why) => {
                tracing::info!(stream = %stream.id(), destination = %redact(&dest), %why, retry_in_ms = pause.as_millis() as u64, "rtmp output stopped");
                report(&stream, index, |r| r.last_error = Some(why));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = ended.wait_for(|e| *e) => return,
        }
        pause = (pause * 2).min(settings.output_retry_max);
        // Back at the live edge: the next segment starts at a keyframe.
        seq = NEXT;
    }
}

/// Segments into ffmpeg until it fails or the egress closes.
async fn pump(
    ffmpeg: &mut Ffmpeg,
    head: Vec<u8>,
    mut reader: SegmentReader,
    egress: &Channel,
    seq: &mut i64,
    stream: &Stream,
    index: usize,
) -> Stop {
    let Some(mut stdin) = ffmpeg.stdin.take() else { return Stop::Failed("no stdin".into()) };
    match tokio::time::timeout(WRITE_WAIT, stdin.write_all(&head)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Stop::Failed(e.to_string()),
        Err(_) => return Stop::Failed(format!("the destination took nothing for {} s", WRITE_WAIT.as_secs())),
    }
    loop {
        while let Some(chunk) = reader.next().await {
            match tokio::time::timeout(WRITE_WAIT, stdin.write_all(&chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Stop::Failed(e.to_string()),
                Err(_) => return Stop::Failed(format!("the destination took nothing for {} s", WRITE_WAIT.as_secs())),
            }
        }
        report(stream, index, |r| r.segments += 1);
        if let Some(status) = ffmpeg.exited() {
            return Stop::Failed(format!("ffmpeg exited ({status})"));
        }
        reader = match next_segment(egress, seq).await {
            Some(r) => r,
            None => return Stop::Ended,
        };
    }
}

/// The next segment of the egress from `seq` (skipping to the live edge when `seq` left the
/// window); `None` once the channel is closed.
async fn next_segment(egress: &Channel, seq: &mut i64) -> Option<SegmentReader> {
    loop {
        match egress.read(*seq) {
            ReadStart::Segment { reader, .. } => {
                *seq = reader.seq() + 1;
                return Some(reader);
            }
            ReadStart::Missing { closed: true, .. } => return None,
            ReadStart::Missing { latest, .. } => *seq = latest,
        }
    }
}

fn report(stream: &Stream, index: usize, f: impl FnOnce(&mut OutputReport)) {
    if let Some(r) = stream.edges.lock().outputs.get_mut(index) {
        f(r);
    }
}
