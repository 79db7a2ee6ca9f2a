//! Who may call the admin listener.
//!
//! - **With a token** (`admin_token`): every `/admin` route needs `Authorization: Bearer
//!   <token>` (the scheme in any case, compared in constant time); `/metrics` too when
//!   `metrics_require_token` is set.
//! - **Without a token** (allowed only on a loopback listener) a browser on the same machine is
//!   the threat: a page from another site can send simple cross-site requests, and a rebinding
//!   DNS name can point a foreign page at the listener. So every request must name the listener
//!   by its own address or a loopback name in `Host`; a request with an `Origin` must come from a
//!   loopback origin; and a call that changes something (`POST`, `PUT`, `PATCH`, `DELETE`) must
//!   be `Content-Type: application/json`, which no cross-site page can send without a CORS
//!   preflight that the listener never answers.

use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};

use super::AdminState;
use crate::http::error::ApiError;

/// Constant-time comparison, so response timing does not leak how much of a guess matched.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && openssl::memcmp::eq(given, expected)
}

/// Whether `req` carries `Authorization: Bearer <expected>` (the scheme is case-insensitive,
/// RFC 9110 11.1).
pub(super) fn authorized(req: &HttpRequest, expected: &str) -> bool {
    let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && token_matches(token.trim().as_bytes(), expected.as_bytes())
}

/// The `/admin` scope's token check.
pub(super) async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let expected = req.app_data::<web::Data<AdminState>>().and_then(|s| s.token.clone());
    if let Some(expected) = expected {
        if !authorized(req.request(), &expected) {
            return Err(ApiError::unauthorized().into());
        }
    }
    next.call(req).await
}

/// The whole listener's guard when it has no token (see the module documentation).
pub(super) async fn local_only(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let tokenless = req.app_data::<web::Data<AdminState>>().is_some_and(|s| s.token.is_none());
    if tokenless {
        check_local(req.request())?;
    }
    next.call(req).await
}

fn forbidden(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

fn check_local(req: &HttpRequest) -> Result<(), ApiError> {
    let own = req.app_config().local_addr();
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !host.is_empty() && !is_local_authority(host, own) {
        return Err(forbidden(
            "foreign-host",
            format!(
                "Host '{host}' does not name this listener; without an admin token only its address or a loopback name is accepted"
            ),
        ));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        if !is_local_authority(authority, own) {
            return Err(forbidden(
                "foreign-origin",
                format!("a request from origin '{origin}' is refused: without an admin token only this listener's own pages may call it"),
            ));
        }
    }
    let mutating = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    if mutating && !is_json(req) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json-required",
            "without an admin token a call that changes something must be sent as Content-Type: application/json",
        ));
    }
    Ok(())
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `authority` (`host[:port]`) names the listener at `own`: its own IP, or a loopback
/// name or address; a port, when given, must be the listener's.
fn is_local_authority(authority: &str, own: std::net::SocketAddr) -> bool {
    let (host, port) = split_authority(authority);
    if port.is_some_and(|p| p != own.port()) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip == own.ip())
}

/// `host[:port]` with IPv6 brackets: the host and the port, if any.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port.parse().unwrap_or(0))),
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"secret", b"secret"));
        assert!(!token_matches(b"secreT", b"secret"));
        assert!(!token_matches(b"secret1", b"secret"));
        assert!(!token_matches(b"", b"secret"));
    }

    #[test]
    fn local_authorities() {
        let own: std::net::SocketAddr = "127.0.0.1:5935".parse().expect("addr");
        for ok in ["127.0.0.1:5935", "localhost:5935", "localhost", "LOCALHOST", "127.0.0.2", "[::1]:5935", "[::1]"] {
            assert!(is_local_authority(ok, own), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:5935",
            "127.0.0.1:80",
            "10.0.0.1:5935",
            "localhost.evil.example",
            "[::1]:1",
            "127.0.0.1:x",
        ] {
            assert!(!is_local_authority(bad, own), "{bad}");
        }
        let public: std::net::SocketAddr = "10.0.0.5:5935".parse().expect("addr");
        assert!(is_local_authority("10.0.0.5:5935", public), "the listener's own address");
    }
}
