//! Assembles and runs the gateway: opens the store, reconciles the configured orchestrators,
//! starts the actors, binds the two listeners, and on a signal drains, flushes and exits.
//!
//! Order matters: configuration is validated before anything else (no port bound, no store
//! opened on a bad config); the store is opened before any port is bound (a locked or corrupt
//! store fails fast); at shutdown the public listener drains first, then scores are flushed,
//! then the store.

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
use byoc_actors::supervisor::{FlushScores, Reload, Supervisor, SupervisorInit};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::{Config, RunArgs, Validated};
use crate::http::admin::AdminState;
use crate::http::public::PublicState;
use crate::telemetry;

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
    public: ServerHandle,
    admin: ServerHandle,
    grace: Duration,
}

impl Gateway {
    /// Starts everything; must run inside an actix system (`#[actix_web::main]`). The phases,
    /// in the order that makes a failed start clean: metrics, store, ports, upstream client,
    /// actors, then the two servers.
    pub async fn start(v: Validated) -> anyhow::Result<Self> {
        let metrics = telemetry::install_metrics().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
        // Store first: a locked or corrupt store must fail before any port is bound.
        let (store, snapshot) = open_store(&v).await?;
        // Ports next, before any actor with timers starts: a port in use then fails the start
        // cleanly (an actor system torn down mid-start panicked on the way out).
        let backlog = v.config.limits.listen_backlog;
        let public_listener =
            listen(v.http_addr, backlog).with_context(|| format!("cannot bind http_addr {}", v.http_addr))?;
        let admin_listener =
            listen(v.admin_addr, backlog).with_context(|| format!("cannot bind admin_addr {}", v.admin_addr))?;
        let (http_addr, admin_addr) = (public_listener.local_addr()?, admin_listener.local_addr()?);
        tracing::info!(scheme = v.signer.scheme(), address = %v.signer.address(), "signer");
        let client = upstream_client(&v.config)?;
        let core = start_actors(&v, store, snapshot, client)?;
        let workers = match v.config.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let public = serve_public(&v, public_listener, core.clone(), workers)?;
        let admin = serve_admin(&v, admin_listener, &core, metrics)?;
        let (public_handle, admin_handle) = (public.handle(), admin.handle());
        actix_web::rt::spawn(public);
        actix_web::rt::spawn(admin);
        tracing::info!(%http_addr, %admin_addr, workers, "byoc-gateway listening");
        Ok(Self {
            http_addr,
            admin_addr,
            supervisor: core.supervisor,
            store: core.store,
            signer: v.signer,
            public: public_handle,
            admin: admin_handle,
            grace: v.config.shutdown_grace,
        })
    }

    /// Graceful stop: stop accepting and drain in-flight jobs (bounded by the grace period),
    /// stop the admin listener, write dirty scores, flush the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!(grace_s = self.grace.as_secs(), "shutting down: draining in-flight jobs");
        if tokio::time::timeout(self.grace + Duration::from_secs(1), self.public.stop(true)).await.is_err() {
            tracing::warn!("drain did not finish within the grace period");
        }
        self.admin.stop(true).await;
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

/// What the actors started and every HTTP worker shares.
#[derive(Clone)]
struct Core {
    scoreboard: Scoreboard,
    supervisor: Addr<Supervisor>,
    store: Addr<Store>,
    policies: PolicyBook,
    signer: SharedSigner,
    marker: Arc<LoopMarker>,
    budgets: RetryBudgets,
    /// Payments to priced orchestrators (used only with a key).
    payments: Arc<Payments>,
    client: ClientSettings,
}

/// The upstream client's settings, checked now rather than inside a worker (TLS set-up).
fn upstream_client(cfg: &Config) -> anyhow::Result<ClientSettings> {
    let client = ClientSettings {
        tls_verify: cfg.routing.tls_verify,
        connect_timeout: cfg.routing.connect_timeout,
        max_connections: cfg.routing.max_connections,
        max_response_bytes: cfg.limits.max_response_bytes,
    };
    byoc_actors::protocol::client::check_tls(&client).context("upstream client")?;
    Ok(client)
}

/// Starts the supervisor (which starts the pair actors) and, when a webhook is configured, the
/// discovery fetcher.
fn start_actors(
    v: &Validated,
    store: Addr<Store>,
    snapshot: store::Snapshot,
    client: ClientSettings,
) -> anyhow::Result<Core> {
    let cfg = &v.config;
    let marker = Arc::new(LoopMarker::new());
    let settings = Arc::new(PairSettings {
        marker: marker.clone(),
        token_refresh: cfg.routing.token_refresh,
        token_retry: cfg.routing.token_retry,
        token_retry_max: cfg.routing.token_retry_max,
        token_timeout: cfg.routing.token_timeout,
        signer: v.signer.clone(),
        payment_limits: v.payment_limits.clone(),
        ..PairSettings::default()
    });
    let (policies, config_policies, eager) = resolve_policies(v, &snapshot);
    let scoreboard = Scoreboard::default();
    let supervisor = Supervisor::new(SupervisorInit {
        settings,
        client: client.clone(),
        store: store.clone(),
        scoreboard: scoreboard.clone(),
        snapshot,
        eager,
        probe_wait: cfg.routing.probe_wait,
        discovery_probes_per_sec: cfg.routing.discovery_probes_per_sec,
        flush_every: cfg.routing.flush_every,
        policies: policies.clone(),
        config_policies,
        discovery: v.discovery.as_ref().map(DiscoveryReport::configured).unwrap_or_default(),
    })
    .context("supervisor")?
    .start();
    if let Some(settings) = v.discovery.clone() {
        Discovery::new(settings, &client, supervisor.clone().recipient()).context("discovery client")?.start();
    }
    Ok(Core {
        scoreboard,
        supervisor,
        store,
        policies,
        signer: v.signer.clone(),
        marker,
        budgets: RetryBudgets::default(),
        payments: Arc::new(Payments::new(v.payment_limits.clone())),
        client,
    })
}

/// The public API's server: each worker has its own upstream client and router.
fn serve_public(v: &Validated, listener: TcpListener, core: Core, workers: usize) -> anyhow::Result<Server> {
    let cfg = &v.config;
    let l = cfg.limits.clone();
    let (mailbox_timeout, probe_wait) = (cfg.routing.mailbox_timeout, cfg.routing.probe_wait);
    let jobs = crate::http::JobLimit::new(l.max_inflight_jobs);
    let bodies = crate::http::body::BodyBudget::new(l.body_budget_bytes);
    // Fixed at start: a reload changes orchestrators and policies, not routes.
    let runner_routes =
        web::Data::new(crate::http::runner::RunnerRoutes::new(v.runner_routes.clone(), cfg.runner.timeout_seconds));
    let header_read_timeout = l.header_read_timeout;
    let server = HttpServer::new(move || {
        let client = build_client(&core.client).unwrap_or_else(|e| {
            tracing::error!(error = %e, "upstream client setup failed in a worker; using defaults");
            awc::Client::default()
        });
        let router = Router {
            scoreboard: core.scoreboard.clone(),
            metrics: Default::default(),
            supervisor: core.supervisor.clone(),
            client,
            policies: core.policies.clone(),
            signer: core.signer.clone(),
            max_response_bytes: l.max_response_bytes,
            mailbox_timeout,
            probe_wait,
            budgets: core.budgets.clone(),
            marker: core.marker.clone(),
            payments: core.payments.clone(),
        };
        App::new()
            .app_data(web::Data::new(PublicState {
                router,
                store: core.store.clone(),
                supervisor: core.supervisor.clone(),
                max_body_bytes: l.max_body_bytes,
                body_read_timeout: l.body_read_timeout,
                jobs: jobs.clone(),
                bodies: bodies.clone(),
            }))
            .app_data(runner_routes.clone())
            .configure(crate::http::public::configure)
            .configure(crate::http::runner::configure)
            .default_service(web::to(crate::http::not_found))
    })
    .workers(workers)
    // Answers go out as soon as they are written (as HAProxy does), not held by Nagle's
    // algorithm waiting for the client's ACK of an earlier segment.
    .tcp_nodelay(true)
    .client_request_timeout(header_read_timeout)
    .disable_signals()
    .shutdown_timeout(cfg.shutdown_grace.as_secs().max(1))
    .listen(listener)?
    .run();
    Ok(server)
}

/// The admin API's server (one worker).
fn serve_admin(v: &Validated, listener: TcpListener, core: &Core, metrics: PrometheusHandle) -> anyhow::Result<Server> {
    let cfg = &v.config;
    let (source, running) = (v.source.clone(), cfg.clone());
    let state = web::Data::new(AdminState {
        supervisor: core.supervisor.clone(),
        metrics,
        token: cfg.admin_token.as_deref().map(Arc::from),
        metrics_require_token: cfg.metrics_require_token,
        reloader: Arc::new(move || reload_message(&source, &running)),
        request_timeout: cfg.limits.body_read_timeout,
        payments: core.payments.clone(),
    });
    let json_limit = cfg.limits.admin_body_bytes;
    let api = web::Data::new(crate::http::admin::openapi());
    let server = HttpServer::new(move || crate::http::admin::app(state.clone(), api.clone(), json_limit))
        .workers(1)
        .client_request_timeout(cfg.limits.header_read_timeout)
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
    Ok(server)
}

/// Opens the store, reconciles the configured orchestrators with it, and forgets the webhook's
/// entries when no webhook is configured any more: the registry and scores the gateway starts
/// with.
async fn open_store(v: &Validated) -> anyhow::Result<(Addr<Store>, store::Snapshot)> {
    let cfg = &v.config;
    let data_dir = cfg.data_dir.clone();
    let db = tokio::task::spawn_blocking(move || store::open(&data_dir))
        .await
        .context("store open task")?
        .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))?;
    let store = Store::start(db);
    let mut snapshot = store
        .send(ReconcileConfig { entries: v.orchestrators.clone() })
        .await
        .context("store actor")?
        .context("cannot reconcile configured orchestrators with the store")?;
    if v.discovery.is_none() {
        forget_webhook_orchestrators(&store, &mut snapshot).await?;
    }
    tracing::info!(
        orchestrators = snapshot.orchestrators.len(),
        pair_records = snapshot.pairs.len(),
        data_dir = %cfg.data_dir.display(),
        "store opened"
    );
    Ok((store, snapshot))
}

/// The capability policies in force: the config file's, then those set through the admin API
/// (persisted), which win. Also returns the config file's alone (what a reload compares with)
/// and the capabilities to start pairs for eagerly.
fn resolve_policies(
    v: &Validated,
    snapshot: &store::Snapshot,
) -> (
    PolicyBook,
    std::collections::HashMap<byoc_actors::capability::Capability, byoc_actors::policy::CapabilityPolicy>,
    Vec<byoc_actors::capability::Capability>,
) {
    let cfg = &v.config;
    // Policies: the config file's, then those set through the admin API (persisted),
    // which win: they are the operator's most recent word.
    let config_policies: std::collections::HashMap<_, _> = v.policies.iter().cloned().collect();
    let mut per_capability = config_policies.clone();
    for (cap, policy) in &snapshot.policies {
        if let Err(e) = policy.validate_with(&cfg.breaker) {
            tracing::error!(capability = %cap, error = %e,
                "the policy stored through the admin API does not fit the current [breaker] table; ignoring it \
                 (fix it with PUT /admin/capabilities/NAME or remove it with DELETE)");
            continue;
        }
        if per_capability.contains_key(cap) {
            tracing::info!(capability = %cap, "policy set through the admin API overrides the config file's");
        }
        per_capability.insert(cap.clone(), policy.clone());
    }
    let eager: Vec<_> = per_capability.keys().cloned().collect();
    let globals = Globals { breaker: cfg.breaker.clone(), queue_depth: cfg.limits.queue_depth };
    let policies = PolicyBook::new(globals, cfg.default_policy.clone(), per_capability);
    (policies, config_policies, eager)
}

/// Without a webhook configured, orchestrators it once listed (persisted with source
/// `webhook`) have nothing left to reconcile them, so they are removed at start, as config
/// entries no longer in the config are.
async fn forget_webhook_orchestrators(store: &Addr<Store>, snapshot: &mut store::Snapshot) -> anyhow::Result<()> {
    let stale: Vec<_> =
        snapshot.orchestrators.iter().filter(|o| o.source == Source::Webhook).map(|o| o.id.clone()).collect();
    if stale.is_empty() {
        return Ok(());
    }
    let delta = store
        .send(ApplyWebhook { add: Vec::new(), remove: stale })
        .await
        .context("store actor")?
        .context("cannot remove the orchestrators of a webhook no longer configured")?;
    let gone: std::collections::HashSet<_> = delta.removed.iter().map(|o| o.id.clone()).collect();
    snapshot.orchestrators.retain(|o| !gone.contains(&o.id));
    snapshot.pairs.retain(|p| !gone.contains(&p.orchestrator));
    tracing::warn!(removed = ?delta.removed.iter().map(|o| &o.url).collect::<Vec<_>>(),
        "no discovery webhook configured: orchestrators a webhook had listed were removed");
    Ok(())
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

/// A listening socket on `addr` with room for `backlog` connections not yet accepted (a burst of
/// connects past std's 128 waits for a SYN retry, a second or more, instead of a queue slot).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
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
