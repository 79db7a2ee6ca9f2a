//! WHIP ingest (RFC 9725): a browser or OBS publishes to a stream's `whip_url` with an SDP offer
//! and gets an answer; its video then comes over WebRTC to the gateway's one UDP socket
//! (`streams.whip_udp_addr`), is put in FLV's form (`avc.rs`) and goes through the same
//! FLV-to-MPEG-TS remux and keyframe cutter as RTMP ingest, onto the stream's ingress channel.
//!
//! ICE (lite: the gateway only answers checks), DTLS, SRTP and RTP depacketizing are `str0m`, a
//! sans-IO crate this module drives (`whip/server.rs`: one task owns the socket and every
//! session; `whip/session.rs`: one publisher's connection). Each session's frames go to a
//! feeding task (`whip/feed.rs`) through a bounded queue, so a slow remux drops frames (then up to
//! the next keyframe, which is asked for) rather than holding the socket or growing memory.
//! The feeder writes H.264 (in AVCC form, `avc.rs`) and Opus as Matroska (`mkv.rs`), since FLV
//! cannot carry Opus for ffmpeg 5, and the ingest remuxes that to MPEG-TS as it does RTMP's FLV.
//!
//! A publisher is accepted only for a live stream with ingress and no other publisher (RTMP or
//! WHIP); otherwise the offer is refused at once. It stays connected across a swap (the channel
//! is the stream's), is disconnected when the stream ends, and its `DELETE` ends the session (not
//! the stream, as an RTMP publisher's disconnect).

mod feed;
mod server;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::ingest::{Ingest, Source};
use crate::stream::{Stream, StreamError, Streams};

/// Bound on the server task's answer to an offer or a delete.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// Frames queued for one session's remux before frames are dropped.
const FRAME_QUEUE: usize = 256;
/// Commands queued for the server task.
const COMMAND_QUEUE: usize = 64;

/// Why a WHIP request was refused.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    /// No such stream, it ended, or it has no ingress.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The stream has a publisher already.
    #[error("stream {stream} has a publisher already ({publisher}); DELETE its WHIP session or disconnect it first")]
    Busy {
        /// The stream.
        stream: String,
        /// Who publishes.
        publisher: String,
    },
    /// The body is not an SDP offer the gateway can answer.
    #[error("invalid SDP offer: {0}")]
    BadOffer(String),
    /// The offer sends no H.264 video.
    #[error("the offer sends no H.264 video (the gateway takes H.264 video and Opus audio)")]
    NoVideo,
    /// No such WHIP session on this stream.
    #[error("no WHIP session {session} on stream {stream}")]
    NoSession {
        /// The stream.
        stream: String,
        /// The session asked for.
        session: String,
    },
    /// The remux could not be started.
    #[error("the ingest could not start: {0}")]
    Ingest(String),
    /// The WHIP server did not answer in time (or is stopping).
    #[error("the WHIP server did not answer in time")]
    Unavailable,
}

impl WhipError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            WhipError::Stream(e) => e.code(),
            WhipError::Busy { .. } => "publisher-exists",
            WhipError::BadOffer(_) => "invalid-sdp",
            WhipError::NoVideo => "unsupported-media",
            WhipError::NoSession { .. } => "whip-session-not-found",
            WhipError::Ingest(_) => "ingest-failed",
            WhipError::Unavailable => "overloaded",
        }
    }
}

/// An accepted offer.
#[derive(Debug, Clone)]
pub struct WhipAnswer {
    /// The SDP answer.
    pub sdp: String,
    /// The session's id (the last segment of its resource URL).
    pub session: String,
}

/// What the server task is asked.
enum Command {
    Offer {
        stream: Arc<Stream>,
        offer: str0m::change::SdpOffer,
        frames: mpsc::Sender<feed::Media>,
        reply: oneshot::Sender<Result<WhipAnswer, WhipError>>,
    },
    Delete {
        stream: String,
        session: String,
        reply: oneshot::Sender<bool>,
    },
}

/// The WHIP ingest: a handle on the server task (cheap to clone; every HTTP worker holds one).
#[derive(Clone)]
pub struct Whip {
    commands: mpsc::Sender<Command>,
    streams: Streams,
    local: SocketAddr,
}

impl std::fmt::Debug for Whip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whip").field("local", &self.local).finish()
    }
}

impl Whip {
    /// Serves WHIP sessions for `streams` on `socket` (bound to the address browsers reach: it is
    /// the one candidate of every answer). The server task runs until every handle is dropped.
    pub fn start(socket: UdpSocket, streams: Streams) -> std::io::Result<Self> {
        let local = socket.local_addr()?;
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let settings = streams.settings().edges.clone();
        actix::spawn(server::Server::new(socket, local, settings).run(rx));
        Ok(Self { commands, streams, local })
    }

    /// The UDP address media comes to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answers `offer` (SDP) from a publisher of stream `id`: checks the stream, creates the
    /// session, then starts the remux (so a refused offer costs no ffmpeg).
    pub async fn offer(&self, id: &str, offer: &str) -> Result<WhipAnswer, WhipError> {
        let offer = str0m::change::SdpOffer::from_sdp_string(offer).map_err(|e| WhipError::BadOffer(e.to_string()))?;
        let stream = self.streams.live(id)?;
        let Some(channel) = stream.ingress.clone() else {
            return Err(StreamError::NoMedia("enable_video_ingress").into());
        };
        let slot = feed::Slot::take(&stream)?;
        let (frames, rx) = mpsc::channel(FRAME_QUEUE);
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Offer { stream: stream.clone(), offer, frames, reply };
        if self.commands.send_timeout(cmd, ANSWER_WAIT).await.is_err() {
            return Err(WhipError::Unavailable);
        }
        let answer = match tokio::time::timeout(ANSWER_WAIT, answer).await {
            Ok(Ok(r)) => r?,
            _ => return Err(WhipError::Unavailable),
        };
        // On a failure here `rx` is dropped: the session ends at its next tick.
        let ingest = Ingest::start(&stream, channel, &self.streams.settings().edges, Source::Whip)
            .await
            .map_err(|e| WhipError::Ingest(e.to_string()))?;
        let audio = server::receives(&answer.sdp, "audio", "opus/48000/2");
        tokio::spawn(feed::run(stream, ingest, rx, slot, audio));
        Ok(answer)
    }

    /// Ends session `session` of stream `id` (the publisher's `DELETE`).
    pub async fn delete(&self, id: &str, session: &str) -> Result<(), WhipError> {
        let (reply, done) = oneshot::channel();
        let cmd = Command::Delete { stream: id.to_string(), session: session.to_string(), reply };
        if self.commands.send_timeout(cmd, ANSWER_WAIT).await.is_err() {
            return Err(WhipError::Unavailable);
        }
        match tokio::time::timeout(ANSWER_WAIT, done).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(WhipError::NoSession { stream: id.to_string(), session: session.to_string() }),
            _ => Err(WhipError::Unavailable),
        }
    }
}
