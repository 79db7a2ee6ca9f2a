//! The floor of the gateway's stack, for `bench/proxy.sh`: an actix-web server that relays
//! `POST /process/request/...` to one upstream through awc, as the gateway does, with none of
//! the gateway's work (no header decoding or signing, no selection, breakers, retries,
//! metrics or logging). Whatever the gateway costs above this is its own logic; whatever this
//! costs above HAProxy is actix-web and awc.
//!
//! Usage: `floor_proxy LISTEN_ADDR UPSTREAM_BASE_URL` (e.g. `127.0.0.1:8080 http://127.0.0.1:9000`).
//! Not part of the gateway; it exists to be measured.

use actix_web::http::header::{HeaderName, CONTENT_TYPE};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// Same allocator as the gateway binary, so the comparison is of the code alone.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LIVEPEER: HeaderName = HeaderName::from_static("livepeer");

/// Relays the job as is: same path, body, `Livepeer` and `Content-Type` headers.
async fn relay(
    req: HttpRequest,
    body: web::Bytes,
    client: web::Data<awc::Client>,
    up: web::Data<String>,
) -> HttpResponse {
    let mut out = client.post(format!("{}{}", up.get_ref(), req.path()));
    for name in [&LIVEPEER, &CONTENT_TYPE] {
        if let Some(v) = req.headers().get(name) {
            out = out.insert_header((name.clone(), v.clone()));
        }
    }
    let mut resp = match out.send_body(body).await {
        Ok(resp) => resp,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let mut answer = HttpResponse::build(resp.status());
    if let Some(ct) = resp.headers().get(CONTENT_TYPE) {
        answer.insert_header((CONTENT_TYPE, ct.clone()));
    }
    match resp.body().limit(16 << 20).await {
        Ok(b) => answer.body(b),
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: floor_proxy LISTEN_ADDR UPSTREAM_BASE_URL");
        std::process::exit(64);
    };
    let upstream = web::Data::new(upstream.trim_end_matches('/').to_string());
    HttpServer::new(move || {
        // One client per worker, pooled keep-alive connections, as the gateway's.
        let connector = awc::Connector::new().limit(1024);
        let client = awc::Client::builder().connector(connector).disable_redirects().no_default_headers().finish();
        App::new()
            .app_data(web::Data::new(client))
            .app_data(upstream.clone())
            .app_data(web::PayloadConfig::new(16 << 20))
            .default_service(web::post().to(relay))
    })
    .bind(listen)?
    .run()
    .await
}
