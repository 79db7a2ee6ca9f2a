//! The RTMP ingest listener (`streams.rtmp_addr`): one task per connection, speaking RTMP with
//! `rml_rtmp` (a sans-IO session: bytes in, packets and events out). A publisher names its stream
//! in the URL it was given (`rtmp://host:port/{stream_id}`: the stream key, or the app when the
//! key is empty) and is accepted only while that stream is live with video ingress and no other
//! RTMP publisher; otherwise its publish is refused at once and the connection closed. The
//! publisher is disconnected when its stream ends (stop, too many swaps, shutdown), never by a
//! swap. Playback over RTMP is refused (outputs are pushed, see `output.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::flv::Tag;
use super::ingest::{Ingest, Source};
use crate::stream::{Stream, Streams};

/// Bound on the handshake and the publish request.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);
/// Bound on a write to the client.
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// RTMP connections at once beyond one per live stream (clients being refused, or connecting).
const SPARE_CONNECTIONS: usize = 64;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("RTMP: {0}")]
    Protocol(String),
    #[error("timed out")]
    Timeout,
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Ingest(#[from] super::ingest::IngestError),
}

/// Serves RTMP publishers on `listener` for `streams` until the task is dropped. Connections are
/// bounded (`limits.max_streams` plus a few).
pub async fn serve_rtmp(listener: TcpListener, streams: Streams) {
    let slots = Arc::new(Semaphore::new(streams.settings().max_streams.saturating_add(SPARE_CONNECTIONS)));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "rtmp: too many connections, refused");
            continue;
        };
        let streams = streams.clone();
        actix::spawn(async move {
            let _permit = permit;
            match connection(sock, peer, &streams).await {
                Ok(()) => tracing::debug!(%peer, "rtmp connection closed"),
                Err(e) => tracing::info!(%peer, error = %e, "rtmp connection ended"),
            }
        });
    }
}

/// A publisher accepted for a stream.
struct Publishing {
    stream: Arc<Stream>,
    ingest: Ingest,
    ended: watch::Receiver<bool>,
}

struct Conn<'a> {
    sock: TcpStream,
    peer: SocketAddr,
    session: ServerSession,
    streams: &'a Streams,
    publishing: Option<Publishing>,
}

async fn connection(mut sock: TcpStream, peer: SocketAddr, streams: &Streams) -> Result<(), ConnError> {
    let _ = sock.set_nodelay(true);
    let leftover =
        tokio::time::timeout(HANDSHAKE_WAIT, handshake(&mut sock)).await.map_err(|_| ConnError::Timeout)??;
    let (session, initial) =
        ServerSession::new(ServerSessionConfig::new()).map_err(|e| ConnError::Protocol(e.to_string()))?;
    let mut conn = Conn { sock, peer, session, streams, publishing: None };
    let result = conn.run(initial, leftover).await;
    if let Some(p) = conn.publishing.take() {
        p.ingest.finish().await;
        let mut e = p.stream.edges.lock();
        e.rtmp_publisher = None;
        if let Err(err) = &result {
            e.rtmp_last_error = Some(err.to_string());
        }
    }
    result
}

async fn handshake(sock: &mut TcpStream) -> Result<Vec<u8>, ConnError> {
    let mut hs = Handshake::new(PeerType::Server);
    let mut buf = vec![0u8; 8192];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Err(ConnError::Protocol("closed during the handshake".into()));
        }
        match hs.process_bytes(&buf[..n]).map_err(|e| ConnError::Protocol(e.to_string()))? {
            HandshakeProcessResult::InProgress { response_bytes } => sock.write_all(&response_bytes).await?,
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                sock.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}

impl Conn<'_> {
    async fn run(&mut self, initial: Vec<ServerSessionResult>, leftover: Vec<u8>) -> Result<(), ConnError> {
        self.apply(initial).await?;
        self.input(&leftover).await?;
        let idle = self.streams.settings().edges.rtmp_idle_timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let ended = async {
                match self.publishing.as_mut() {
                    Some(p) => {
                        let _ = p.ended.wait_for(|e| *e).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let n = tokio::select! {
                r = tokio::time::timeout(idle, self.sock.read(&mut buf)) => match r {
                    Ok(r) => r?,
                    Err(_) => return Err(ConnError::Timeout),
                },
                () = ended => {
                    tracing::info!(peer = %self.peer, "rtmp publisher disconnected: its stream ended");
                    return Ok(());
                }
            };
            if n == 0 {
                return Ok(());
            }
            if self.input(&buf[..n]).await? {
                return Ok(());
            }
        }
    }

    /// Feeds bytes to the session; `true` when the publisher finished.
    async fn input(&mut self, bytes: &[u8]) -> Result<bool, ConnError> {
        if bytes.is_empty() {
            return Ok(false);
        }
        let results = self.session.handle_input(bytes).map_err(|e| ConnError::Protocol(e.to_string()))?;
        let mut done = false;
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => self.send(&p.bytes).await?,
                ServerSessionResult::RaisedEvent(e) => done |= self.event(e).await?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(done)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        tokio::time::timeout(WRITE_WAIT, self.sock.write_all(bytes)).await.map_err(|_| ConnError::Timeout)??;
        Ok(())
    }

    async fn apply(&mut self, results: Vec<ServerSessionResult>) -> Result<(), ConnError> {
        for r in results {
            if let ServerSessionResult::OutboundResponse(p) = r {
                self.send(&p.bytes).await?;
            }
        }
        Ok(())
    }

    async fn accept(&mut self, request_id: u32) -> Result<(), ConnError> {
        let r = self.session.accept_request(request_id).map_err(|e| ConnError::Protocol(e.to_string()))?;
        self.apply(r).await
    }

    async fn refuse(&mut self, request_id: u32, code: &str, why: String) -> Result<bool, ConnError> {
        let r = self.session.reject_request(request_id, code, &why).map_err(|e| ConnError::Protocol(e.to_string()))?;
        self.apply(r).await?;
        let _ = self.sock.shutdown().await;
        Err(ConnError::Refused(why))
    }

    async fn event(&mut self, e: ServerSessionEvent) -> Result<bool, ConnError> {
        match e {
            ServerSessionEvent::ConnectionRequested { request_id, .. } => self.accept(request_id).await.map(|()| false),
            ServerSessionEvent::PublishStreamRequested { request_id, app_name, stream_key, .. } => {
                let id = if stream_key.is_empty() { app_name } else { stream_key };
                match self.admit(&id).await {
                    Ok(p) => {
                        self.publishing = Some(p);
                        self.accept(request_id).await?;
                        tracing::info!(peer = %self.peer, stream = %id, "rtmp publisher accepted");
                        Ok(false)
                    }
                    Err(why) => {
                        tracing::info!(peer = %self.peer, stream = %id, %why, "rtmp publisher refused");
                        self.refuse(request_id, "NetStream.Publish.BadName", why).await
                    }
                }
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                self.refuse(request_id, "NetStream.Play.Failed", "playback is not served over RTMP".into()).await
            }
            ServerSessionEvent::PublishStreamFinished { .. } => Ok(true),
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                self.media(Tag::Video, timestamp.value, &data).await
            }
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                self.media(Tag::Audio, timestamp.value, &data).await
            }
            _ => Ok(false),
        }
    }

    async fn media(&mut self, kind: Tag, ts: u32, data: &[u8]) -> Result<bool, ConnError> {
        match self.publishing.as_mut() {
            Some(p) => {
                p.ingest.tag(kind, ts, data).await?;
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// A publisher for stream `id`: live, with ingress, and not published already.
    async fn admit(&mut self, id: &str) -> Result<Publishing, String> {
        if self.publishing.is_some() {
            return Err("this connection publishes already".into());
        }
        let stream = match self.streams.get(id) {
            Some(s) if !s.is_ended() => s,
            Some(_) => return Err(format!("stream {id} has ended")),
            None => return Err(format!("no stream {id}: start it first (POST /process/stream/start)")),
        };
        let Some(channel) = stream.ingress.clone() else {
            return Err(format!("stream {id} was started without parameters.enable_video_ingress"));
        };
        {
            let mut e = stream.edges.lock();
            if let Some(other) = &e.rtmp_publisher {
                return Err(format!("stream {id} has an RTMP publisher already ({other})"));
            }
            if let Some(other) = &e.whip_publisher {
                return Err(format!("stream {id} has a WHIP publisher already ({other})"));
            }
            e.rtmp_publisher = Some(self.peer.to_string());
            e.rtmp_sessions += 1;
        }
        let ended = stream.ended_watch();
        match Ingest::start(&stream, channel, &self.streams.settings().edges, Source::Rtmp).await {
            Ok(ingest) => Ok(Publishing { stream, ingest, ended }),
            Err(e) => {
                let mut edges = stream.edges.lock();
                edges.rtmp_publisher = None;
                edges.rtmp_last_error = Some(e.to_string());
                Err(e.to_string())
            }
        }
    }
}
