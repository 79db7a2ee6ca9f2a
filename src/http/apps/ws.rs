//! A session's WebSocket, relayed frame by frame: the client's upgrade is accepted once the
//! runner's app accepted the gateway's (so a refusal is a clean HTTP error), then frames go both
//! ways unbuffered until either side closes; a close on one side is passed to the other. The
//! session is active (not idle) while the socket is open.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::Message;
use awc::ws::{Frame, Message as UpMessage};
use byoc_actors::liverunner::AppRouter;
use futures_util::{SinkExt as _, StreamExt as _};

use super::super::error::ApiError;
use super::app_error;

/// Largest frame relayed either way.
const MAX_FRAME: usize = 16 << 20;

/// Whether `req` asks for a WebSocket.
pub(super) fn is_upgrade(req: &HttpRequest) -> bool {
    req.headers().get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Relays the WebSocket `req` asks for to session `id`'s app at `tail` (with the query).
pub(super) async fn session_ws(
    router: &AppRouter,
    id: &str,
    tail: &str,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (app_url, activity) = router.begin_session(id).map_err(app_error)?;
    let mut url = format!("{}{tail}", app_url.trim_end_matches('/'));
    if let Some(q) = req.uri().query() {
        url = format!("{url}?{q}");
    }
    let mut up = router.client.ws(url).max_frame_size(MAX_FRAME);
    if let Some(p) = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()) {
        up = up.protocols(p.split(',').map(str::trim));
    }
    let (_, upstream) = match up.connect().await {
        Ok(x) => x,
        Err(e) => {
            drop(activity);
            return Err(app_error(router.session_ws_failed(id, e).await));
        }
    };
    let (resp, mut session, client) = actix_ws::handle(req, payload).map_err(|e| {
        ApiError::bad_request("bad-websocket", format!("not a WebSocket upgrade the gateway can accept: {e}"))
    })?;
    let mut client = client.max_frame_size(MAX_FRAME);
    actix_web::rt::spawn(async move {
        let _activity = activity;
        let mut upstream = upstream;
        loop {
            tokio::select! {
                m = client.next() => {
                    let out = match m {
                        Some(Ok(Message::Text(t))) => UpMessage::Text(t),
                        Some(Ok(Message::Binary(b))) => UpMessage::Binary(b),
                        Some(Ok(Message::Ping(p))) => UpMessage::Ping(p),
                        Some(Ok(Message::Pong(p))) => UpMessage::Pong(p),
                        Some(Ok(Message::Close(r))) => {
                            let _ = upstream.send(UpMessage::Close(r)).await;
                            return;
                        }
                        Some(Ok(Message::Continuation(_) | Message::Nop)) => continue,
                        Some(Err(_)) | None => {
                            let _ = upstream.send(UpMessage::Close(None)).await;
                            return;
                        }
                    };
                    if upstream.send(out).await.is_err() {
                        let _ = session.close(None).await;
                        return;
                    }
                }
                f = upstream.next() => {
                    let sent = match f {
                        Some(Ok(Frame::Text(t))) => match std::str::from_utf8(&t) {
                            Ok(s) => session.text(s.to_string()).await,
                            Err(_) => session.binary(t).await,
                        },
                        Some(Ok(Frame::Binary(b))) => session.binary(b).await,
                        Some(Ok(Frame::Ping(p))) => session.ping(&p).await,
                        Some(Ok(Frame::Pong(p))) => session.pong(&p).await,
                        Some(Ok(Frame::Close(r))) => {
                            let _ = session.close(r).await;
                            return;
                        }
                        Some(Ok(Frame::Continuation(_))) => Ok(()),
                        Some(Err(_)) | None => {
                            let _ = session.close(None).await;
                            return;
                        }
                    };
                    if sent.is_err() {
                        let _ = upstream.send(UpMessage::Close(None)).await;
                        return;
                    }
                }
            }
        }
    });
    Ok(resp)
}
