//! Assembles and runs the gateway: opens the store, reconciles the configured orchestrators,
//! starts the actors, binds the two listeners, and on a signal drains, flushes and exits.
//!
//! Order matters: configuration is validated before anything else (no port bound, no store
//! opened on a bad config); the store is opened before any port is bound (a locked or corrupt
//! store fails fast); at shutdown the public listener drains first, then scores are flushed,
//! then the store.

mod open;
mod serve;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use byoc_actors::budget::RetryBudgets;
use byoc_actors::discovery::{Discovery, DiscoveryReport};
use byoc_actors::orchestrator::Source;
use byoc_actors::pair::PairSettings;
use byoc_actors::policy::{Globals, PolicyBook};
use byoc_actors::protocol::client::{build_client, ClientSettings};
use byoc_actors::protocol::signer::SharedSigner;
use byoc_actors::protocol::via::LoopMarker;
use byoc_actors::route::{Payments, Router};
use byoc_actors::scoreboard::Scoreboard;
use byoc_actors::store::{self, ApplyWebhook, Flush, ReconcileConfig, Store};
use byoc_actors::stream::Streams;
use byoc_actors::supervisor::{FlushScores, Reload, Supervisor, SupervisorInit};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::{Config, RunArgs, Validated};
use crate::http::admin::AdminState;
use crate::http::public::PublicState;
use crate::telemetry;
use open::{open_registry, resolve_policies, Opened};
use serve::{listen, serve_admin, serve_public, start_actors, upstream_client};

/// A running gateway.
pub struct Gateway {
    /// Where the public API listens.
    pub http_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The supervisor (registry).
    pub supervisor: Addr<Supervisor>,
    /// The store.
    pub store: Addr<Store>,
    /// The identity orchestrators see (scheme and address are shown at start).
    pub signer: SharedSigner,
    /// Live streams (stopped upstream at shutdown).
    pub streams: Streams,
    /// Where the RTMP ingest listens, when it is on.
    pub rtmp_addr: Option<SocketAddr>,
    rtmp: Option<actix_web::rt::task::JoinHandle<()>>,
    /// How fresh the registry is (etcd), as the admin API shows it.
    pub registry_status: byoc_actors::registry::RegistryStatus,
    /// The etcd backend, when the registry is shared.
    etcd: Option<byoc_actors::registry::etcd::EtcdRegistry>,
    /// Where WHIP ingest takes media (UDP), when it is on.
    pub whip_addr: Option<SocketAddr>,
    public: ServerHandle,
    admin: ServerHandle,
    grace: Duration,
    /// Live Runner sessions (released at shutdown) and the client settings to release them with.
    sessions: Option<(byoc_actors::liverunner::Sessions, ClientSettings)>,
}

impl Gateway {
    /// Starts everything; must run inside an actix system (`#[actix_web::main]`). The phases,
    /// in the order that makes a failed start clean: metrics, store, ports, upstream client,
    /// actors, then the two servers.
    pub async fn start(v: Validated) -> anyhow::Result<Self> {
        let metrics = telemetry::install_metrics().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
        byoc_actors::metrics::set_payment_limit(v.payment_limits.max_ev_per_capability_hour);
        // Store and registry first: a locked or corrupt store, or an etcd that cannot be used,
        // must fail before any port is bound.
        let opened = open_registry(&v).await?;
        // Ports next, before any actor with timers starts: a port in use then fails the start
        // cleanly (an actor system torn down mid-start panicked on the way out).
        let backlog = v.config.limits.listen_backlog;
        let public_listener =
            listen(v.http_addr, backlog).with_context(|| format!("cannot bind http_addr {}", v.http_addr))?;
        let admin_listener =
            listen(v.admin_addr, backlog).with_context(|| format!("cannot bind admin_addr {}", v.admin_addr))?;
        let (http_addr, admin_addr) = (public_listener.local_addr()?, admin_listener.local_addr()?);
        let rtmp_listener = match v.rtmp_addr {
            Some(addr) => {
                let l = listen(addr, backlog).with_context(|| format!("cannot bind streams.rtmp_addr {addr}"))?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let whip_socket = match v.whip_addr {
            Some(addr) => {
                let s = std::net::UdpSocket::bind(addr)
                    .with_context(|| format!("cannot bind streams.whip_udp_addr {addr}"))?;
                s.set_nonblocking(true)?;
                Some(s)
            }
            None => None,
        };
        let mut v = v;
        if let Some(l) = &rtmp_listener {
            v.stream_settings.edges.rtmp_port = Some(l.local_addr()?.port());
        }
        v.stream_settings.edges.whip = whip_socket.is_some();
        tracing::info!(scheme = v.signer.scheme(), address = %v.signer.address(), "signer");
        let client = upstream_client(&v.config)?;
        let etcd = opened.etcd.clone();
        let registry_status = opened.status.clone();
        let mut core = start_actors(&v, opened, client)?;
        if let Some(s) = whip_socket {
            let s = tokio::net::UdpSocket::from_std(s).context("whip socket")?;
            core.whip = Some(byoc_actors::media::Whip::start(s, core.streams.clone()).context("whip socket")?);
        }
        let whip_addr = core.whip.as_ref().map(byoc_actors::media::Whip::local_addr);
        let workers = match v.config.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let jobs = crate::http::JobLimit::new(v.config.limits.max_inflight_jobs);
        let fleet =
            serve::fleet(&v, http_addr, admin_addr, &jobs, &core.streams, etcd.as_ref().map(|(e, _)| e.clone()));
        if let Some((etcd, from)) = &etcd {
            etcd.start_watch(*from, core.supervisor.clone().recipient(), core.supervisor.clone().recipient());
            etcd.start_membership(fleet.source());
        }
        let public = serve_public(&v, public_listener, core.clone(), workers, jobs)?;
        let admin = serve_admin(&v, admin_listener, &core, metrics, fleet)?;
        let (public_handle, admin_handle) = (public.handle(), admin.handle());
        let rtmp_addr = match rtmp_listener {
            Some(l) => {
                let addr = l.local_addr()?;
                let l = tokio::net::TcpListener::from_std(l).context("rtmp listener")?;
                let task = actix_web::rt::spawn(byoc_actors::media::serve_rtmp(l, core.streams.clone()));
                Some((addr, task))
            }
            None => None,
        };
        actix_web::rt::spawn(public);
        actix_web::rt::spawn(admin);
        let rtmp_shown = rtmp_addr.as_ref().map_or_else(|| "off".to_string(), |(a, _)| a.to_string());
        let whip_shown = whip_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::info!(%http_addr, %admin_addr, rtmp_addr = %rtmp_shown, whip_udp_addr = %whip_shown, workers, "byoc-gateway listening");
        let (rtmp_addr, rtmp) = rtmp_addr.map_or((None, None), |(a, t)| (Some(a), Some(t)));
        let sessions = core.live.as_ref().map(|l| (l.sessions.clone(), core.client_settings()));
        Ok(Self {
            http_addr,
            admin_addr,
            supervisor: core.supervisor,
            store: core.store,
            streams: core.streams.clone(),
            rtmp_addr,
            rtmp,
            whip_addr,
            signer: v.signer,
            registry_status,
            etcd: etcd.map(|(e, _)| e),
            public: public_handle,
            admin: admin_handle,
            grace: v.config.shutdown_grace,
            sessions,
        })
    }

    /// Graceful stop: stop accepting and drain in-flight jobs (bounded by the grace period),
    /// stop the admin listener, write dirty scores, flush the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        // Streams first, while the workers they run on are up: each orchestrator is told to stop.
        let live = self.streams.live_count();
        if live > 0 {
            tracing::info!(streams = live, "shutting down: stopping live streams");
        }
        let stopped = self.streams.shutdown(self.grace.min(Duration::from_secs(15))).await;
        if stopped > 0 {
            tracing::info!(streams = stopped, "live streams stopped");
        }
        // No new RTMP publisher (the live ones were disconnected as their streams ended).
        if let Some(t) = &self.rtmp {
            t.abort();
        }
        tracing::info!(grace_s = self.grace.as_secs(), "shutting down: draining in-flight jobs");
        // Live Runner sessions are released at their runners first (their streams then end, so
        // the drain does not wait on them), and again after the drain for any opened meanwhile.
        let end_sessions = |when: &'static str| {
            let sessions = self.sessions.clone();
            async move {
                let Some((sessions, settings)) = sessions else { return };
                let client = build_client(&settings).unwrap_or_default();
                let n = sessions.end_all(&client, byoc_actors::liverunner::sessions::EndReason::Shutdown).await;
                if n > 0 {
                    tracing::info!(sessions = n, when, "live runner sessions released at shutdown");
                }
            }
        };
        end_sessions("before the drain").await;
        if tokio::time::timeout(self.grace + Duration::from_secs(1), self.public.stop(true)).await.is_err() {
            tracing::warn!("drain did not finish within the grace period");
        }
        end_sessions("after the drain").await;
        self.admin.stop(true).await;
        if let Some(etcd) = &self.etcd {
            // Leaves the fleet at once (the lease is revoked) rather than after its TTL.
            etcd.shutdown().await;
        }
        match self.supervisor.send(FlushScores).timeout(Duration::from_secs(10)).await {
            Ok(Ok(n)) => tracing::info!(pairs = n, "pair scores saved"),
            Ok(Err(e)) => tracing::warn!(error = %e, "saving pair scores at shutdown failed"),
            Err(e) => tracing::warn!(error = %e, "supervisor did not answer at shutdown"),
        }
        self.store
            .send(Flush)
            .timeout(Duration::from_secs(10))
            .await
            .context("store did not answer at shutdown")?
            .context("store flush failed")?;
        tracing::info!("store flushed; bye");
        Ok(())
    }
}

/// Re-reads the configuration the gateway was started with, as a [`Reload`] for the
/// supervisor. `None` when there is no config file to re-read.
pub fn reload_message(source: &RunArgs, running: &Config) -> Option<Result<Reload, String>> {
    source.config.as_ref()?;
    Some(Config::load_for_reload(source).map_err(|e| e.to_string()).map(|v| Reload {
        restart_required: running.restart_required(&v.config),
        orchestrators: v.orchestrators,
        policies: v.policies.into_iter().collect(),
    }))
}

/// `byoc-gateway run`: start, print the ready line, serve (reloading on SIGHUP) until
/// SIGTERM or SIGINT, shut down.
pub async fn run(v: Validated) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (source, running) = (v.source.clone(), v.config.clone());
    // Handlers first: a signal sent as soon as the ready line appears (or during start-up) must
    // find them installed, or its default action kills the process (a SIGHUP reload would stop
    // the gateway, a SIGTERM would skip the drain).
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let gw = Gateway::start(v).await?;
    print_ready(&gw);
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(signal = "SIGTERM", "signal received");
                break;
            }
            _ = int.recv() => {
                tracing::info!(signal = "SIGINT", "signal received");
                break;
            }
            _ = hup.recv() => match reload_message(&source, &running) {
                None => tracing::warn!("SIGHUP: started without --config; nothing to reload"),
                Some(Err(e)) => tracing::error!(error = %e, "SIGHUP: the config file is invalid; nothing changed"),
                Some(Ok(msg)) => match gw.supervisor.send(msg).timeout(Duration::from_secs(10)).await {
                    Ok(Ok(report)) => tracing::info!(?report, "SIGHUP: configuration reloaded"),
                    Ok(Err(e)) => tracing::error!(error = %e, "SIGHUP: reload failed"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: the supervisor did not answer"),
                },
            },
        }
    }
    gw.shutdown().await
}

/// The line scripts and tests wait for (stdout, flushed).
pub fn print_ready(gw: &Gateway) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "byoc-gateway ready http={} admin={} signer={} address={}",
        gw.http_addr,
        gw.admin_addr,
        gw.signer.scheme(),
        gw.signer.address()
    );
    let _ = out.flush();
}
