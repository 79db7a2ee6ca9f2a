//! WHIP (RFC 9725) on a stream: `POST /process/stream/{id}/whip` with an SDP offer answers `201
//! Created` with the SDP answer and the session's resource in `Location`;
//! `DELETE /process/stream/{id}/whip/{session}` ends the session. Thin handlers over
//! [`byoc_actors::media::Whip`]; trickle ICE (`PATCH`) is not served (405, as the RFC lets a
//! server answer: the answer carries the gateway's one candidate and ICE lite needs no more).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{cors, fail};
use crate::http::body::{read_body, BodyReservation, BodyRules};
use crate::http::error::ApiError;
use crate::http::public::PublicState;

/// Largest SDP offer read (a browser's is a few KiB).
pub const MAX_SDP_BYTES: usize = 64 << 10;

fn whip(state: &PublicState) -> Result<&byoc_actors::media::Whip, ApiError> {
    state.whip.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "whip-not-enabled",
            "WHIP ingest is off on this gateway (streams.whip_udp_addr is empty)",
        )
    })
}

/// `POST /process/stream/{id}/whip`: a publisher's SDP offer.
pub(super) async fn offer(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<PublicState>,
) -> HttpResponse {
    let server = match whip(&state) {
        Ok(w) => w,
        Err(e) => return fail(e, &state),
    };
    let sdp_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp")));
    if !sdp_type {
        let e = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "a WHIP offer is Content-Type: application/sdp",
        );
        return fail(e, &state);
    }
    // Refused at once, before the body is read, when the stream cannot take a publisher.
    if let Err(e) = state.streams.ingress(&id) {
        return fail(e, &state);
    }
    let rules = BodyRules { max_bytes: MAX_SDP_BYTES, ..state.body.clone() };
    let mut held = BodyReservation::new(&state.bodies, req.peer_addr().map(|a| a.ip()));
    let body = match read_body(&req, payload, &rules, &mut held).await {
        Ok(b) => b.to_bytes(),
        Err(e) => return fail(e, &state),
    };
    let Ok(sdp) = std::str::from_utf8(&body) else {
        return fail(ApiError::bad_request("invalid-sdp", "the SDP offer is not UTF-8"), &state);
    };
    match server.offer(&id, sdp).await {
        Ok(answer) => {
            let location = format!("/process/stream/{}/whip/{}", id.as_str(), answer.session);
            let mut resp = HttpResponse::Created()
                .content_type("application/sdp")
                .insert_header((header::LOCATION, location))
                .body(answer.sdp);
            if state.streams.settings().allow_cors {
                resp.headers_mut().insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location"));
            }
            cors(resp, &state, false)
        }
        Err(e) => fail(e, &state),
    }
}

/// `DELETE /process/stream/{id}/whip/{session}`: the publisher is done.
pub(super) async fn delete(path: web::Path<(String, String)>, state: web::Data<PublicState>) -> HttpResponse {
    let (id, session) = path.into_inner();
    let server = match whip(&state) {
        Ok(w) => w,
        Err(e) => return fail(e, &state),
    };
    match server.delete(&id, &session).await {
        Ok(()) => cors(HttpResponse::Ok().finish(), &state, false),
        Err(e) => fail(e, &state),
    }
}

impl From<byoc_actors::media::WhipError> for ApiError {
    fn from(e: byoc_actors::media::WhipError) -> Self {
        use byoc_actors::media::WhipError as W;
        let status = match &e {
            W::Stream(s) => return ApiError::from(s.clone()),
            W::Busy { .. } => StatusCode::CONFLICT,
            W::BadOffer(_) | W::NoVideo => StatusCode::BAD_REQUEST,
            W::NoSession { .. } => StatusCode::NOT_FOUND,
            W::Ingest(_) => StatusCode::INTERNAL_SERVER_ERROR,
            W::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut err = ApiError::new(status, e.code(), e.to_string());
        if matches!(e, W::Unavailable) {
            err.retry_after = Some(1);
        }
        err
    }
}
