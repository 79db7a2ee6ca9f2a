//! The actors the gateway starts and the two HTTP servers built on them: what every worker shares
//! (`Core`), the upstream client's settings, the public and admin servers.

use super::*;

/// What the actors started and every HTTP worker shares.
#[derive(Clone)]
pub(super) struct Core {
    scoreboard: Scoreboard,
    pub(super) supervisor: Addr<Supervisor>,
    pub(super) store: Addr<Store>,
    policies: PolicyBook,
    signer: SharedSigner,
    marker: Arc<LoopMarker>,
    budgets: RetryBudgets,
    /// Payments to priced orchestrators (used only with a key).
    payments: Arc<Payments>,
    client: ClientSettings,
    /// Live streams.
    pub(super) streams: Streams,
    /// How fresh the registry is.
    status: byoc_actors::registry::RegistryStatus,
    /// WHIP ingest, when it is on (set once its socket is bound).
    pub(super) whip: Option<byoc_actors::media::Whip>,
    /// Live Runner apps, unless switched off.
    pub(super) live: Option<LiveCore>,
}

/// What Live Runner started and every worker shares.
#[derive(Clone)]
pub(super) struct LiveCore {
    /// The discovery actor.
    pub(super) runners: Addr<byoc_actors::liverunner::Runners>,
    /// The app boards discovery fills.
    pub(super) boards: byoc_actors::liverunner::Boards,
    /// The sessions the gateway holds.
    pub(super) sessions: byoc_actors::liverunner::Sessions,
    /// How calls and reservations run.
    pub(super) dispatch: Arc<byoc_actors::liverunner::DispatchSettings>,
    /// Per-app settings.
    pub(super) policies: byoc_actors::liverunner::AppPolicies,
    /// The remote signer that pays priced runners, if configured.
    pub(super) remote: Option<Arc<byoc_actors::liverunner::RemoteSigner>>,
}

impl LiveCore {
    /// An app router with `client`.
    pub(super) fn router(
        &self,
        client: awc::Client,
        payments: Arc<Payments>,
        signer: byoc_actors::protocol::signer::SharedSigner,
    ) -> byoc_actors::liverunner::AppRouter {
        byoc_actors::liverunner::AppRouter {
            boards: self.boards.clone(),
            client,
            settings: self.dispatch.clone(),
            sessions: self.sessions.clone(),
            payments,
            signer,
            policies: self.policies.clone(),
            remote: self.remote.clone(),
        }
    }
}

impl Core {
    /// The upstream client's settings.
    pub(super) fn client_settings(&self) -> ClientSettings {
        self.client.clone()
    }
}

/// The upstream client's settings, checked now rather than inside a worker (TLS set-up).
pub(super) fn upstream_client(cfg: &Config) -> anyhow::Result<ClientSettings> {
    let client = ClientSettings {
        tls_verify: cfg.routing.tls_verify,
        connect_timeout: cfg.routing.connect_timeout,
        max_connections: cfg.routing.max_connections,
        max_response_bytes: cfg.limits.max_response_bytes,
        answers: byoc_actors::memory::ByteBudget::new(
            cfg.limits.answer_budget_bytes,
            byoc_actors::metrics::ANSWER_BYTES,
        ),
    };
    byoc_actors::protocol::client::check_tls(&client).context("upstream client")?;
    Ok(client)
}

/// Starts the supervisor (which starts the pair actors) and, when a webhook is configured, the
/// discovery fetcher.
pub(super) fn start_actors(v: &Validated, opened: Opened, client: ClientSettings) -> anyhow::Result<Core> {
    let Opened { store, snapshot, registry, status, forced, .. } = opened;
    let cfg = &v.config;
    let marker = Arc::new(LoopMarker::new());
    let pair_settings = Arc::new(PairSettings {
        marker: marker.clone(),
        token_refresh: cfg.routing.token_refresh,
        token_retry: cfg.routing.token_retry,
        token_retry_max: cfg.routing.token_retry_max,
        token_timeout: cfg.routing.token_timeout,
        signer: v.signer.clone(),
        payment_limits: v.payment_limits.clone(),
        answers: client.answers.clone(),
        ..PairSettings::default()
    });
    let (policies, config_policies, eager) = resolve_policies(v, &snapshot);
    let scoreboard = Scoreboard::default();
    let supervisor = Supervisor::new(SupervisorInit {
        settings: pair_settings.clone(),
        client: client.clone(),
        store: store.clone(),
        registry,
        status: status.clone(),
        forced,
        scoreboard: scoreboard.clone(),
        snapshot,
        eager,
        probe_wait: cfg.routing.probe_wait,
        discovery_probes_per_sec: cfg.routing.discovery_probes_per_sec,
        max_discovered_capabilities: cfg.routing.max_discovered_capabilities,
        flush_every: cfg.routing.flush_every,
        policies: policies.clone(),
        config_policies,
        discovery: v.discovery.as_ref().map(DiscoveryReport::configured).unwrap_or_default(),
        history: cfg.history.settings(),
    })
    .context("supervisor")?
    .start();
    if let Some(settings) = v.discovery.clone() {
        Discovery::new(settings, &client, supervisor.clone().recipient()).context("discovery client")?.start();
    }
    let payments = Arc::new(Payments::new(v.payment_limits.clone()));
    let live = match &v.live_runner {
        Some(lr) => {
            let boards = byoc_actors::liverunner::Boards::with_aliases(lr.aliases.clone());
            let runners = byoc_actors::liverunner::Runners::new(
                Arc::new(lr.settings.clone()),
                pair_settings,
                &client,
                supervisor.clone(),
                boards.clone(),
                lr.policies.clone(),
            )
            .context("live runner discovery client")?
            .start();
            let sessions = byoc_actors::liverunner::Sessions::new(lr.sessions.clone());
            let reaper_client = build_client(&client).context("live runner session client")?;
            actix_web::rt::spawn(sessions.clone().reap(reaper_client));
            let dispatch = Arc::new(byoc_actors::liverunner::DispatchSettings {
                mailbox_timeout: cfg.routing.mailbox_timeout,
                ..lr.dispatch.clone()
            });
            let live = LiveCore {
                runners,
                boards,
                sessions,
                dispatch,
                policies: lr.policies.clone(),
                remote: lr.remote_payments.clone(),
            };
            // Metered sessions are kept funded from the system arbiter, with their own client.
            let funder = live.router(
                build_client(&client).context("live runner payment client")?,
                payments.clone(),
                v.signer.clone(),
            );
            actix_web::rt::spawn(funder.fund());
            Some(live)
        }
        None => None,
    };
    Ok(Core {
        scoreboard,
        supervisor,
        store,
        policies,
        signer: v.signer.clone(),
        marker,
        budgets: RetryBudgets::default(),
        payments,
        client,
        streams: Streams::new(v.stream_settings.clone()),
        whip: None,
        status,
        live,
    })
}

/// This replica as the fleet sees it (`GET /admin/fleet`, its membership record).
pub(super) fn fleet(
    v: &Validated,
    http_addr: SocketAddr,
    admin_addr: SocketAddr,
    jobs: &Arc<crate::http::JobLimit>,
    streams: &Streams,
    etcd: Option<byoc_actors::registry::etcd::EtcdRegistry>,
) -> Arc<crate::http::admin::fleet::Fleet> {
    let record = byoc_actors::registry::etcd::ReplicaRecord {
        id: etcd.as_ref().map_or_else(|| "local".to_string(), |e| e.settings().replica_id.clone()),
        http_addr: http_addr.to_string(),
        admin_addr: admin_addr.to_string(),
        public_url: Some(v.config.streams.public_url.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        uptime_seconds: 0,
        jobs_in_flight: 0,
        streams_in_flight: 0,
        updated_at_unix_ms: 0,
        registry_revision: None,
    };
    let lease_ttl = v.etcd.as_ref().map_or(0, |s| s.lease_ttl.as_secs());
    Arc::new(crate::http::admin::fleet::Fleet {
        record,
        jobs: jobs.clone(),
        streams: streams.clone(),
        etcd,
        lease_ttl_seconds: lease_ttl,
    })
}

/// The public API's server: each worker has its own upstream client and router.
pub(super) fn serve_public(
    v: &Validated,
    listener: TcpListener,
    core: Core,
    workers: usize,
    jobs: Arc<crate::http::JobLimit>,
) -> anyhow::Result<Server> {
    let cfg = &v.config;
    let l = cfg.limits.clone();
    let (mailbox_timeout, probe_wait) = (cfg.routing.mailbox_timeout, cfg.routing.probe_wait);
    let bodies =
        crate::http::body::BodyBudget::new(l.body_budget_bytes, l.body_budget_client_percent, l.max_body_bytes);
    let body_rules = crate::http::body::BodyRules {
        max_bytes: l.max_body_bytes,
        read_timeout: l.body_read_timeout,
        min_bytes_per_sec: l.body_min_bytes_per_sec,
        rate_grace: l.body_rate_grace,
    };
    // Fixed at start: a reload changes orchestrators and policies, not routes.
    let runner_routes =
        web::Data::new(crate::http::runner::RunnerRoutes::new(v.runner_routes.clone(), cfg.runner.timeout_seconds));
    let header_read_timeout = l.header_read_timeout;
    let public_url = web::Data::new(crate::http::stream::PublicUrl(cfg.streams.public_url.trim().to_string()));
    let server = HttpServer::new(move || {
        let client = build_client(&core.client).unwrap_or_else(|e| {
            tracing::error!(error = %e, "upstream client setup failed in a worker; using defaults");
            awc::Client::default()
        });
        let router = Router {
            scoreboard: core.scoreboard.clone(),
            metrics: Default::default(),
            supervisor: core.supervisor.clone(),
            client: client.clone(),
            policies: core.policies.clone(),
            signer: core.signer.clone(),
            max_response_bytes: l.max_response_bytes,
            answers: core.client.answers.clone(),
            mailbox_timeout,
            probe_wait,
            budgets: core.budgets.clone(),
            marker: core.marker.clone(),
            payments: core.payments.clone(),
        };
        let apps = core.live.as_ref().map(|l| {
            web::Data::new(crate::http::apps::AppsState {
                router: l.router(client.clone(), core.payments.clone(), core.signer.clone()),
            })
        });
        let live = apps.is_some();
        App::new()
            .app_data(web::Data::new(PublicState {
                router,
                store: core.store.clone(),
                supervisor: core.supervisor.clone(),
                body: body_rules.clone(),
                jobs: jobs.clone(),
                bodies: bodies.clone(),
                streams: core.streams.clone(),
                whip: core.whip.clone(),
            }))
            .app_data(runner_routes.clone())
            .app_data(public_url.clone())
            .configure(crate::http::public::configure)
            .configure(crate::http::stream::configure)
            .configure(crate::http::runner::configure)
            .configure(|c| {
                if let Some(apps) = apps {
                    c.app_data(apps);
                }
                if live {
                    crate::http::apps::configure(c);
                }
            })
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
pub(super) fn serve_admin(
    v: &Validated,
    listener: TcpListener,
    core: &Core,
    metrics: PrometheusHandle,
    fleet: Arc<crate::http::admin::fleet::Fleet>,
) -> anyhow::Result<Server> {
    let cfg = &v.config;
    let (source, running) = (v.source.clone(), cfg.clone());
    let state = web::Data::new(AdminState {
        supervisor: core.supervisor.clone(),
        metrics,
        token: cfg.admin_token.as_deref().map(Arc::from),
        metrics_require_token: cfg.metrics_require_token,
        metrics_pair_series: cfg.metrics_pair_series,
        reloader: Arc::new(move || reload_message(&source, &running)),
        request_timeout: cfg.limits.body_read_timeout,
        payments: core.payments.clone(),
        streams: core.streams.clone(),
        registry: core.status.clone(),
        fleet,
        runners: core.live.as_ref().map(|l| l.runners.clone()),
        sessions: core.live.as_ref().map(|l| l.sessions.clone()),
        client: core.client.clone(),
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

/// A listening socket on `addr` with room for `backlog` connections not yet accepted (a burst of
/// connects past std's 128 waits for a SYN retry, a second or more, instead of a queue slot).
pub(super) fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}
