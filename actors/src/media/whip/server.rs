//! The WHIP server task: owns the UDP socket and every session (str0m's pattern for one socket:
//! a datagram goes to the session whose `Rtc` accepts it, by its ICE credentials or the
//! publisher's address). A short loop: drain every session's output (datagrams sent, events
//! handled, ended sessions dropped), then wait for a command, a datagram, or the earliest time a
//! session needs. Nothing here waits on a session's remux (frames go to a bounded queue), so one
//! slow stream never delays another's packets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::session::{End, Session};
use super::{Command, WhipAnswer, WhipError};
use crate::stream::EdgeSettings;

/// Largest datagram read (WebRTC keeps under the path MTU).
const DATAGRAM: usize = 2048;
/// Longest sleep when no session needs time sooner.
const IDLE_TICK: Duration = Duration::from_secs(1);

pub(super) struct Server {
    socket: UdpSocket,
    local: SocketAddr,
    settings: EdgeSettings,
    sessions: HashMap<String, Session>,
}

impl Server {
    pub(super) fn new(socket: UdpSocket, local: SocketAddr, settings: EdgeSettings) -> Self {
        Self { socket, local, settings, sessions: HashMap::new() }
    }

    /// Runs until every [`Whip`](super::Whip) handle is dropped.
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; DATAGRAM];
        let mut out = Vec::new();
        loop {
            let next = self.drive(&mut out).await;
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => self.receive(&buf[..n], source),
                    Err(e) => tracing::debug!(error = %e, "whip socket read failed"),
                },
                () = tokio::time::sleep_until(next.into()) => {
                    let now = Instant::now();
                    for s in self.sessions.values_mut() {
                        s.tick(now, &self.settings);
                    }
                }
            }
        }
        for s in self.sessions.values_mut() {
            s.finish(End::Deleted);
        }
    }

    /// Sends what every session has to send, handles its events, drops the ended ones; the
    /// earliest time one needs.
    async fn drive(&mut self, out: &mut Vec<(SocketAddr, Vec<u8>)>) -> Instant {
        let mut next = Instant::now() + IDLE_TICK;
        let mut ended = Vec::new();
        for (id, s) in &mut self.sessions {
            if let Some(t) = s.poll(out) {
                next = next.min(t);
            }
            if s.end.is_some() {
                ended.push(id.clone());
            }
        }
        for (to, bytes) in out.drain(..) {
            if let Err(e) = self.socket.send_to(&bytes, to).await {
                tracing::debug!(%to, error = %e, "whip send failed");
            }
        }
        for id in ended {
            if let Some(s) = self.sessions.remove(&id) {
                let end = s.end.clone().unwrap_or(End::Deleted);
                tracing::info!(stream = %s.stream.id, session = %id, end = ?end, "whip session ended");
                if let Some(e) = end.error() {
                    s.stream.edges.lock().whip_last_error = Some(e);
                }
                // Dropping the session closes its frame queue: the remux finishes and the
                // stream's publisher slot is released.
            }
        }
        next
    }

    fn receive(&mut self, bytes: &[u8], source: SocketAddr) {
        let Ok(r) = Receive::new(Protocol::Udp, source, self.local, bytes) else {
            return;
        };
        let now = Instant::now();
        let input = Input::Receive(now, r);
        if let Some(s) = self.sessions.values_mut().find(|s| s.end.is_none() && s.rtc.accepts(&input)) {
            s.input(input, now);
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Offer { stream, offer, frames, reply } => {
                let r = self.answer(offer).map(|(rtc, sdp)| {
                    let id = crate::stream::request::random_id();
                    self.sessions.insert(id.clone(), Session::new(id.clone(), stream, rtc, frames, Instant::now()));
                    WhipAnswer { sdp, session: id }
                });
                // A publisher that gave up waiting: its session is dropped at its connect bound.
                let _ = reply.send(r);
            }
            Command::Delete { stream, session, reply } => {
                let found = match self.sessions.get_mut(&session) {
                    Some(s) if s.stream.id == stream => {
                        s.finish(End::Deleted);
                        true
                    }
                    _ => false,
                };
                let _ = reply.send(found);
            }
        }
    }

    /// An `Rtc` (ICE lite on this socket's address, H.264 and Opus only) and its SDP answer.
    fn answer(&self, offer: SdpOffer) -> Result<(str0m::Rtc, String), WhipError> {
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(Instant::now());
        let candidate = Candidate::host(self.local, "udp").map_err(|e| WhipError::BadOffer(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| WhipError::BadOffer(e.to_string()))?;
        let sdp = answer.to_sdp_string();
        if !receives(&sdp, "video", "H264/90000") {
            return Err(WhipError::NoVideo);
        }
        Ok((rtc, sdp))
    }
}

/// Whether an SDP answer takes `codec` (`H264/90000`, `opus/48000/2`) of `kind` (`video`,
/// `audio`): an `m=` section of that kind with a port (0 rejects it) mapping a payload type to it.
pub(super) fn receives(sdp: &str, kind: &str, codec: &str) -> bool {
    let mut in_kind = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            in_kind = f.next() == Some(kind) && f.next().is_some_and(|port| port != "0");
        } else if in_kind
            && line.starts_with("a=rtpmap:")
            && line.split_whitespace().nth(1).is_some_and(|c| c.eq_ignore_ascii_case(codec))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::receives;

    fn receives_h264(sdp: &str) -> bool {
        receives(sdp, "video", "H264/90000")
    }

    #[test]
    fn an_answer_takes_h264_only_in_a_live_video_section() {
        let ok = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                  m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n";
        assert!(receives_h264(ok));
        let rejected = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n";
        assert!(!receives_h264(rejected));
        let vp8 = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(!receives_h264(vp8));
        let audio_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(!receives_h264(audio_only));
        assert!(receives(ok, "audio", "opus/48000/2"));
        assert!(!receives(vp8, "audio", "opus/48000/2"));
    }
}
