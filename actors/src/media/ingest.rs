//! One publisher's media into its stream's ingress channel: RTMP's FLV tags (or a WHIP session's
//! Matroska, `mkv.rs`) into ffmpeg's stdin
//! (`-c copy -f mpegts`), its MPEG-TS out of stdout through the [`Cutter`](super::ts::Cutter),
//! each segment written on the channel as it grows (a segment streams to the orchestrator before
//! it is complete). Back-pressure: a tag waits until ffmpeg takes it, so a publisher faster than
//! the remux is slowed at its TCP socket rather than buffered.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use super::ffmpeg::Ffmpeg;
use super::flv;
use super::ts::{Cutter, Piece};
use crate::protocol::trickle::window::{Channel, SegmentWriter};
use crate::protocol::trickle::NEXT;
use crate::stream::{EdgeSettings, Stream};

/// Bound on one write into ffmpeg's stdin: past it ffmpeg is taken as stuck.
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Bound on ffmpeg's exit once its input ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Why an ingest failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    #[error("ffmpeg could not be started ({program}): {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("ffmpeg stopped taking media: {0}")]
    Stuck(String),
    #[error("a media message of {0} bytes is over FLV's limit")]
    TooLarge(usize),
}

/// Who publishes: says what the FLV header announces and which counter the segments go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An RTMP publisher (audio and video).
    Rtmp,
    /// A WHIP publisher (H.264 and Opus in Matroska: FLV cannot carry Opus for ffmpeg 5).
    Whip,
}

/// A running ingest.
pub(crate) struct Ingest {
    ffmpeg: Ffmpeg,
    stdin: ChildStdin,
    segmenter: JoinHandle<()>,
}

impl Ingest {
    /// Starts ffmpeg for `stream` (which has an ingress channel); for RTMP, writes the FLV header
    /// (a WHIP session writes its Matroska header itself, once it knows the video's parameters).
    pub(crate) async fn start(
        stream: &Arc<Stream>,
        channel: Arc<Channel>,
        settings: &EdgeSettings,
        source: Source,
    ) -> Result<Self, IngestError> {
        let format = match source {
            Source::Rtmp => "flv",
            Source::Whip => "matroska",
        };
        let mut args: Vec<String> = [
            // Start as soon as the first tags are in: the streams are named in the FLV header
            // (Matroska's Tracks) and their configuration comes first.
            "-probesize",
            "32768",
            "-analyzeduration",
            "0",
            "-f",
            format,
            "-i",
            "pipe:0",
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "mpegts",
            "-muxdelay",
            "0",
            "-flush_packets",
            "1",
            "pipe:1",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        if source == Source::Whip {
            // The muxer waits for a packet of every stream before it writes: a browser whose
            // audio pauses must not hold the video for ffmpeg's default 10 s.
            let at = args.len() - 1;
            args.splice(at..at, ["-max_interleave_delta".to_string(), "1000000".to_string()]);
        }
        let mut ffmpeg = Ffmpeg::spawn(&settings.ffmpeg, &args, true)
            .map_err(|source| IngestError::Spawn { program: settings.ffmpeg.clone(), source })?;
        let (Some(mut stdin), Some(stdout)) = (ffmpeg.stdin.take(), ffmpeg.stdout.take()) else {
            let _ = ffmpeg.finish(EXIT_WAIT).await;
            return Err(IngestError::Stuck("no pipes".into()));
        };
        let min = settings.min_segment.as_secs_f64();
        let segmenter = tokio::spawn(segment(stdout, channel, stream.clone(), min, source));
        if source == Source::Rtmp {
            write(&mut stdin, &flv::header(), &ffmpeg).await?;
        }
        Ok(Self { ffmpeg, stdin, segmenter })
    }

    /// Hands one RTMP media message to ffmpeg.
    pub(crate) async fn tag(&mut self, kind: flv::Tag, timestamp_ms: u32, data: &[u8]) -> Result<(), IngestError> {
        let tag = flv::tag(kind, timestamp_ms, data).ok_or(IngestError::TooLarge(data.len()))?;
        write(&mut self.stdin, &tag, &self.ffmpeg).await
    }

    /// Hands container bytes (a WHIP session's Matroska) to ffmpeg.
    pub(crate) async fn bytes(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        write(&mut self.stdin, bytes, &self.ffmpeg).await
    }

    /// Ends the input: ffmpeg flushes and exits (killed if it does not), the last segment is
    /// closed. Always reaps ffmpeg.
    pub(crate) async fn finish(self) {
        drop(self.stdin);
        let _ = self.ffmpeg.finish(EXIT_WAIT).await;
        let mut seg = self.segmenter;
        if tokio::time::timeout(EXIT_WAIT, &mut seg).await.is_err() {
            seg.abort();
        }
    }
}

async fn write(stdin: &mut ChildStdin, bytes: &[u8], ffmpeg: &Ffmpeg) -> Result<(), IngestError> {
    match tokio::time::timeout(WRITE_WAIT, stdin.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(IngestError::Stuck(format!("{e}; ffmpeg: {}", ffmpeg.tail()))),
        Err(_) => Err(IngestError::Stuck(format!("no progress for {} s", WRITE_WAIT.as_secs()))),
    }
}

/// ffmpeg's MPEG-TS into segments on `channel`, each from a keyframe.
async fn segment(
    mut stdout: ChildStdout,
    channel: Arc<Channel>,
    stream: Arc<Stream>,
    min_seconds: f64,
    source: Source,
) {
    let mut cutter = Cutter::new(min_seconds);
    let mut writer: Option<SegmentWriter> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in cutter.push(&buf[..n]) {
            match piece {
                Piece::Cut => {
                    if let Some(w) = writer.take() {
                        w.finish();
                    }
                    writer = channel.write(NEXT);
                    if writer.is_none() {
                        // The channel closed: the stream ended.
                        return;
                    }
                    let mut edges = stream.edges.lock();
                    match source {
                        Source::Rtmp => edges.rtmp_segments += 1,
                        Source::Whip => edges.whip_segments += 1,
                    }
                }
                Piece::Data(b) => {
                    if let Some(w) = writer.as_mut() {
                        if w.write(b).is_err() {
                            // Over the segment limit (or closed): the rest of it is dropped.
                            stream.counters.in_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            writer = None;
                        }
                    }
                }
            }
        }
    }
    if let Some(w) = writer.take() {
        w.finish();
    }
}
