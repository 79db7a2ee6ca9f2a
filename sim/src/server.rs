//! Starting, stopping and restarting a simulator's HTTP server, and its routes.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::knobs::Knobs;
use crate::state::SimState;
use crate::{control, live, liverunner, orchestrator};

/// A running simulator.
#[derive(Clone)]
pub struct SimHandle {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its state (knobs, stats).
    pub state: Arc<SimState>,
}

impl SimHandle {
    /// Adds (or replaces) a Live Runner runner at this orchestrator.
    pub fn add_runner(&self, spec: crate::RunnerSpec) {
        self.state.add_runner(spec);
    }

    /// Stops listening: later connections are refused.
    pub async fn stop(&self) {
        self.state.crash().await;
    }

    /// Listens again on the same address after [`SimHandle::stop`], with the same knobs and
    /// stats (a crashed container coming back; set `cold_start_jobs` for a cold first answer).
    /// Must run inside an actix system.
    pub fn restart(&self) -> std::io::Result<()> {
        if self.state.server.lock().is_some() {
            return Ok(());
        }
        serve(&self.state, TcpListener::bind(self.state.addr)?)
    }
}

/// Starts a plain-HTTP simulator on `listener` serving `capabilities` with `knobs` each;
/// must run inside an actix system.
pub fn start(name: &str, listener: TcpListener, capabilities: &[(&str, Knobs)]) -> std::io::Result<SimHandle> {
    start_with(name, listener, capabilities, false)
}

/// Like [`start`], but serving HTTPS with a self-signed certificate generated now, as
/// go-livepeer orchestrators do.
pub fn start_tls(name: &str, listener: TcpListener, capabilities: &[(&str, Knobs)]) -> std::io::Result<SimHandle> {
    start_with(name, listener, capabilities, true)
}

fn start_with(
    name: &str,
    listener: TcpListener,
    capabilities: &[(&str, Knobs)],
    tls: bool,
) -> std::io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let url = format!("{}://{addr}", if tls { "https" } else { "http" });
    let state = Arc::new(SimState::new(name, addr, tls, url.clone()));
    for (cap, knobs) in capabilities {
        state.set(cap, knobs.clone());
    }
    serve(&state, listener)?;
    Ok(SimHandle { url, state })
}

/// Serves `state` on `listener` (one worker: a simulator is tiny).
fn serve(state: &Arc<SimState>, listener: TcpListener) -> std::io::Result<()> {
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(1)
        // go-livepeer's orchestrator (Go's net/http) keeps idle connections open; actix-web's
        // default of 5 s would close the gateway's pooled connections under it, and the next
        // call on one would break.
        .keep_alive(std::time::Duration::from_secs(75))
        .disable_signals()
        .shutdown_timeout(1);
    let server = if state.tls {
        let acceptor = self_signed_acceptor().map_err(|e| std::io::Error::other(format!("TLS setup: {e}")))?;
        server.listen_openssl(listener, acceptor)?.run()
    } else {
        server.listen(listener)?.run()
    };
    *state.server.lock() = Some(server.handle());
    actix_web::rt::spawn(server);
    start_debit_loop(state);
    Ok(())
}

/// Starts the Live Runner debit loop once per simulator (it outlives restarts, as the
/// orchestrator's accounting outlives a crash of its listener in this model, and ends with the
/// simulator's state).
fn start_debit_loop(state: &Arc<SimState>) {
    if state.debit_loop.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(state);
    actix_web::rt::spawn(async move {
        loop {
            let interval = match weak.upgrade() {
                Some(s) => s.live_runner.lock().knobs.debit_interval_ms.max(10),
                None => return,
            };
            tokio::time::sleep(std::time::Duration::from_millis(interval)).await;
            let Some(s) = weak.upgrade() else { return };
            liverunner::debit_round(&mut s.live_runner.lock(), std::time::Instant::now());
        }
    });
}

/// A TLS acceptor with a fresh self-signed P-256 certificate for `localhost`/127.0.0.1.
fn self_signed_acceptor() -> Result<openssl::ssl::SslAcceptorBuilder, openssl::error::ErrorStack> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::ssl::{SslAcceptor, SslMethod};
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "byoc-gateway-sim")?;
    let name = name.build();
    let mut cert = X509Builder::new()?;
    cert.set_version(2)?;
    let serial = BigNum::from_u32(rand::random::<u32>() >> 1)?.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(365)?);
    cert.set_not_before(&not_before)?;
    cert.set_not_after(&not_after)?;
    let san = SubjectAlternativeName::new().dns("localhost").ip("127.0.0.1").build(&cert.x509v3_context(None, None))?;
    cert.append_extension(san)?;
    cert.sign(&key, MessageDigest::sha256())?;
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    acceptor.set_private_key(&key)?;
    acceptor.set_certificate(&cert.build())?;
    Ok(acceptor)
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(256 << 20))
        .service(web::resource("/process/token").route(web::get().to(orchestrator::token)))
        .service(web::resource("/process/request/{tail:.*}").route(web::post().to(orchestrator::job)))
        .service(web::resource("/capability/register").route(web::post().to(control::register)))
        .service(web::resource("/ai/stream/start").route(web::post().to(live::start)))
        .service(web::resource("/ai/stream/update").route(web::post().to(live::update)))
        .service(web::resource("/ai/stream/stop").route(web::post().to(live::stop)))
        .service(web::resource("/ai/stream/payment").route(web::post().to(live::payment)))
        .service(
            web::resource("/ai/trickle/{name}")
                .route(web::delete().to(live::channel_delete))
                .route(web::post().to(|| async { actix_web::HttpResponse::Ok().finish() })),
        )
        .service(web::resource("/ai/trickle/{name}/next").route(web::get().to(live::channel_next)))
        .service(
            web::resource("/ai/trickle/{name}/{seq}")
                .route(web::get().to(live::channel_get))
                .route(web::post().to(live::channel_post))
                .route(web::delete().to(live::segment_delete)),
        )
        .service(web::resource("/sim/streams/vanish").route(web::post().to(control::vanish_streams)))
        .service(web::resource("/discovery").route(web::get().to(liverunner::discovery)))
        .service(web::resource("/apps/{route}/session").route(web::post().to(liverunner::reserve)))
        .service(web::resource("/apps/{route}/session/{id}/stop").route(web::post().to(liverunner::stop)))
        .service(web::resource("/apps/{route}/session/{id}/payment").route(web::post().to(liverunner::session_payment)))
        .service(web::resource("/apps/{route}/session/{id}/app{tail:.*}").to(liverunner::session_app))
        .service(web::resource("/apps/{route}/app{tail:.*}").to(liverunner::app_call))
        .service(web::resource("/refresh-payment").route(web::post().to(liverunner::refresh_payment)))
        .service(web::resource("/payment").route(web::post().to(liverunner::generic_payment)))
        .service(
            web::resource("/sim/live").route(web::get().to(control::live_report)).route(web::post().to(control::live)),
        )
        .service(web::resource("/sim/live/release").route(web::post().to(control::live_release)))
        .service(web::resource("/sim/state").route(web::get().to(control::state_report)))
        .service(web::resource("/sim/last").route(web::get().to(control::last_seen)))
        .service(web::resource("/sim/knobs").route(web::post().to(control::knobs)))
        .service(web::resource("/sim/crash").route(web::post().to(control::crash)))
        .service(web::resource("/sim/release").route(web::post().to(control::release)));
}
