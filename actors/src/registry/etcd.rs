//! The etcd backend: a fleet's registry, shared by every replica.
//!
//! - Writes ([`writes`]) are revision-checked transactions, acknowledged once etcd has
//!   committed them; a write that fails says whether it may still commit ([`outcome`]).
//! - Every replica watches the registry's prefix ([`watch`]) and applies what it sees, its own
//!   writes included; after a break it resumes from the last revision, or resyncs after a
//!   compaction ([`cursor`]).
//! - Each replica registers itself under a lease ([`replicas`]): the fleet's membership, which
//!   forgets a dead replica within the lease's TTL.
//! - `byoc-gateway store import --registry-backend etcd` moves a sled gateway's registry in
//!   ([`import`]).
//!
//! etcd runs on its own thread with its own tokio runtime: its gRPC channel and tasks never
//! share an arbiter with the actors, and a slow etcd can stall nothing but registry writes.

pub(crate) mod cursor;
pub(crate) mod import;
pub(crate) mod keys;
pub(crate) mod outcome;
pub mod replicas;
pub(crate) mod watch;
pub(crate) mod writes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use etcd_client::{Client, ConnectOptions, GetOptions};
use parking_lot::Mutex;

pub use replicas::{ReplicaRecord, ReplicaSource};
pub use watch::{Resynced, WatchEvents};

use self::keys::Keys;
use self::outcome::{failure, outcome, Failure};
use self::writes::{Lost, Writer, Written};
use super::{Backend, Committed, Forced, Outcome, Registry, RegistryFuture, RegistryState, RegistryStatus, WriteError};
use crate::capability::Capability;
use crate::metrics as m;
use crate::orchestrator::{Label, Listed, Orchestrator, OrchestratorChange, OrchestratorId, Source};
use crate::pair::PairKey;
use crate::policy::CapabilityPolicy;
use crate::store::{Duplicate, ForgetCapability, Store, WebhookDelta};

/// Bound on connecting to etcd (one endpoint).
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// TLS to etcd (PEM files).
#[derive(Clone, Default)]
pub struct EtcdTls {
    /// CA certificate(s) that signed etcd's server certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (with `key_file`), for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// Client key.
    pub key_file: Option<PathBuf>,
}

/// How to reach the fleet's etcd.
#[derive(Clone)]
pub struct EtcdSettings {
    /// `http://host:port` or `https://host:port`, one per etcd member.
    pub endpoints: Vec<String>,
    /// Key prefix of this fleet.
    pub prefix: String,
    /// TTL of the replica's membership lease.
    pub lease_ttl: Duration,
    /// Bound on one registry write (then 503 with outcome `unknown`).
    pub request_timeout: Duration,
    /// TLS, when the endpoints are `https://`.
    pub tls: Option<EtcdTls>,
    /// User name and password (etcd's auth); never logged or shown.
    pub credentials: Option<(String, String)>,
    /// This replica's id (records say who wrote them; the membership key).
    pub replica_id: String,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials.as_ref().map(|_| "(set)"))
            .field("replica_id", &self.replica_id)
            .finish()
    }
}

/// Why the etcd backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The etcd thread could not start.
    #[error("cannot start the etcd client thread: {0}")]
    Thread(String),
    /// A TLS file could not be read or used.
    #[error("etcd TLS: {0}")]
    Tls(String),
    /// etcd could not be reached or refused the request.
    #[error("etcd at {endpoints}: {detail}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// What happened.
        detail: String,
    },
}

struct Inner {
    rt: tokio::runtime::Handle,
    settings: EtcdSettings,
    keys: Keys,
    status: RegistryStatus,
    /// The local store (this replica's pair records); `None` for `store import`.
    store: Option<Addr<Store>>,
    client: tokio::sync::Mutex<Option<Client>>,
    /// Stops the runtime's thread (and with it the watch and membership tasks).
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The membership lease, to revoke at shutdown.
    lease: Mutex<Option<i64>>,
    /// The replicas last listed (what `/admin/fleet` answers while etcd is unreachable).
    last_replicas: Mutex<Vec<ReplicaRecord>>,
}

/// The etcd registry. Cloning shares it.
#[derive(Clone)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
}

impl EtcdRegistry {
    /// Starts the etcd thread. Nothing is sent to etcd yet (the client connects on first use);
    /// `status` is what the watch will keep up to date.
    pub fn start(
        settings: EtcdSettings,
        store: Option<Addr<Store>>,
        status: RegistryStatus,
    ) -> Result<Self, EtcdError> {
        let (tx_handle, rx_handle) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("etcd".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx_handle.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx_handle.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| EtcdError::Thread(e.to_string()))?;
        let rt = rx_handle.recv().map_err(|e| EtcdError::Thread(e.to_string()))?.map_err(EtcdError::Thread)?;
        let keys = Keys::new(&settings.prefix);
        Ok(Self {
            inner: Arc::new(Inner {
                rt,
                settings,
                keys,
                status,
                store,
                client: tokio::sync::Mutex::new(None),
                stop: Mutex::new(Some(stop_tx)),
                lease: Mutex::new(None),
                last_replicas: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The freshness of this replica's copy.
    pub fn status(&self) -> RegistryStatus {
        self.inner.status.clone()
    }

    /// The settings it was started with.
    pub fn settings(&self) -> &EtcdSettings {
        &self.inner.settings
    }

    /// Runs `f` on the etcd runtime and awaits it from any thread.
    async fn on_runtime<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        self.inner.rt.spawn(f).await.map_err(|e| format!("etcd task failed: {e}"))
    }

    /// Reads the whole registry (with the revision of the read), bounded by the request
    /// timeout. Used at start and by `store import`.
    pub async fn load(&self) -> Result<(RegistryState, i64), EtcdError> {
        let inner = self.inner.clone();
        let res = self
            .on_runtime(async move {
                let timeout = inner.settings.request_timeout;
                match tokio::time::timeout(timeout, async {
                    let client = inner.client().await?;
                    watch::load(&client, &inner.keys).await
                })
                .await
                {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {}s", timeout.as_secs_f64())),
                }
            })
            .await;
        res.and_then(|r| r).map_err(|detail| self.unreachable(detail))
    }

    fn unreachable(&self, detail: String) -> EtcdError {
        EtcdError::Unreachable { endpoints: self.inner.settings.endpoints.join(","), detail }
    }

    /// Starts watching the registry from the state the replica started with (`from`: the
    /// revision of its load, or `None` when it started from its local cache and must resync
    /// first). Changes go to `events`, resyncs to `resynced` (the supervisor).
    pub fn start_watch(&self, from: Option<i64>, events: Recipient<WatchEvents>, resynced: Recipient<Resynced>) {
        let cursor = match from {
            Some(rev) => cursor::WatchCursor::loaded(rev),
            None => cursor::WatchCursor::from_cache(),
        };
        let inner = self.inner.clone();
        self.inner.rt.spawn(async move { watch::run(inner, cursor, events, resynced).await });
    }

    /// Registers this replica under a lease and keeps it alive (and its record current) until
    /// shutdown.
    pub fn start_membership(&self, source: ReplicaSource) {
        let inner = self.inner.clone();
        self.inner.rt.spawn(async move { replicas::run(inner, source).await });
    }

    /// The fleet's replicas, read now (the last list read when etcd does not answer, with
    /// `false`).
    pub async fn replicas(&self) -> (Vec<ReplicaRecord>, bool) {
        let inner = self.inner.clone();
        let fresh = self
            .on_runtime(async move {
                tokio::time::timeout(inner.settings.request_timeout, replicas::list(&inner))
                    .await
                    .ok()
                    .and_then(Result::ok)
            })
            .await
            .ok()
            .flatten();
        match fresh {
            Some(list) => (list, true),
            None => (self.inner.last_replicas.lock().clone(), false),
        }
    }

    /// Leaves the fleet (revokes the membership lease, so the replica disappears at once) and
    /// stops the etcd thread.
    pub async fn shutdown(&self) {
        let lease = self.inner.lease.lock().take();
        if let Some(id) = lease {
            let inner = self.inner.clone();
            let _ = self
                .on_runtime(async move {
                    if let Ok(client) = inner.client().await {
                        let _ = tokio::time::timeout(Duration::from_secs(2), client.lease_client().revoke(id)).await;
                    }
                })
                .await;
        }
        if let Some(stop) = self.inner.stop.lock().take() {
            let _ = stop.send(());
        }
    }

    /// Loads a store export's registry (orchestrators with their ids, runtime policies) into
    /// etcd; refuses, writing nothing, if any of its ids or URLs is already there.
    pub async fn import(&self, export: &crate::store::StoreExport) -> Result<import::Imported, EtcdError> {
        let inner = self.inner.clone();
        let export = export.clone();
        self.on_runtime(async move { import::run(&inner, &export).await })
            .await
            .map_err(|detail| self.unreachable(detail))?
    }

    /// Runs one write on the etcd runtime: refused at once while the watch finds etcd
    /// unreachable (not applied), bounded by the request timeout (then unknown), its etcd error
    /// classified.
    fn write<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl for<'a> FnOnce(Writer<'a>) -> futures_util::future::BoxFuture<'a, Written<T>> + Send + 'static,
    ) -> RegistryFuture<T> {
        let inner = self.inner.clone();
        let refused = {
            let s = inner.status.get();
            (!s.writable()).then(|| {
                let r = s.report(Backend::Etcd, crate::clock::unix_ms_now());
                format!(
                    "etcd is unreachable ({}, for {}s): the {what} was not sent",
                    r.error.unwrap_or_else(|| "not connected".into()),
                    r.stale_seconds.unwrap_or(0)
                )
            })
        };
        let handle = self.inner.rt.clone();
        Box::pin(async move {
            if let Some(detail) = refused {
                return Err(unavailable(Failure::NotSent, detail));
            }
            let timeout = inner.settings.request_timeout;
            let task = handle.spawn(async move {
                let client = match inner.client().await {
                    Ok(c) => c,
                    Err(e) => {
                        return Err(unavailable(failure(&e), format!("cannot reach etcd: {}", outcome::describe(&e))))
                    }
                };
                let writer = Writer { kv: client.kv_client(), keys: &inner.keys, by: &inner.settings.replica_id };
                match tokio::time::timeout(timeout, op(writer)).await {
                    Err(_) => Err(unavailable(
                        Failure::TimedOut,
                        format!("etcd did not answer the {what} within {}s", timeout.as_secs_f64()),
                    )),
                    Ok(Err(e)) => {
                        Err(unavailable(failure(&e), format!("etcd failed the {what}: {}", outcome::describe(&e))))
                    }
                    Ok(Ok(Err(Lost))) => {
                        metrics::counter!(m::REGISTRY_WRITES_TOTAL, "outcome" => "conflict").increment(1);
                        Err(unavailable(
                            Failure::Client,
                            format!("the {what} lost every race with other replicas' writes; nothing was written"),
                        ))
                    }
                    Ok(Ok(Ok(v))) => {
                        metrics::counter!(m::REGISTRY_WRITES_TOTAL, "outcome" => "committed").increment(1);
                        Ok(v)
                    }
                }
            });
            match task.await {
                Ok(r) => r,
                Err(e) => Err(unavailable(Failure::Other, format!("the etcd task failed: {e}"))),
            }
        })
    }
}

/// A write error with its outcome, counted.
fn unavailable(f: Failure<'_>, detail: String) -> WriteError {
    let outcome = outcome(f);
    metrics::counter!(m::REGISTRY_WRITES_TOTAL, "outcome" => outcome.as_str()).increment(1);
    let detail = match outcome {
        Outcome::NotApplied => format!("{detail}; the change was not applied"),
        Outcome::Unknown => format!("{detail}; it may still be applied: read the registry back before retrying"),
    };
    WriteError::Unavailable { outcome, detail }
}

impl Inner {
    /// The client, connected on first use (and again after a failed connect).
    async fn client(&self) -> Result<Client, etcd_client::Error> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let s = &self.settings;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(DIAL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &s.credentials {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &s.tls {
            options = options.with_openssl_tls(openssl_config(tls).map_err(etcd_client::Error::InvalidArgs)?);
        }
        let client =
            tokio::time::timeout(s.request_timeout, Client::connect(&s.endpoints, Some(options))).await.map_err(
                |_| etcd_client::Error::GRpcStatus(tonic::Status::unavailable("connect error: no answer from etcd")),
            )??;
        *guard = Some(client.clone());
        Ok(client)
    }
}

/// The OpenSSL client configuration for `tls` (files read now; a bad file is a start-up error
/// through [`check_tls`]).
fn openssl_config(tls: &EtcdTls) -> Result<etcd_client::OpenSslClientConfig, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let ca = tls.ca_file.as_ref().map(read).transpose()?;
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        (None, None) => None,
        _ => return Err("cert_file and key_file go together".into()),
    };
    Ok(etcd_client::OpenSslClientConfig::default().manually(move |b| {
        if let Some(ca) = &ca {
            for cert in openssl::x509::X509::stack_from_pem(ca)? {
                b.cert_store_mut().add_cert(cert)?;
            }
        }
        if let Some((cert, key)) = &identity {
            b.set_certificate(openssl::x509::X509::from_pem(cert)?.as_ref())?;
            b.set_private_key(openssl::pkey::PKey::private_key_from_pem(key)?.as_ref())?;
        }
        Ok(())
    }))
}

/// Checks that the TLS files can be read and parsed (configuration validation).
pub fn check_tls(tls: &EtcdTls) -> Result<(), EtcdError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| EtcdError::Tls(format!("cannot read {}: {e}", p.display())));
    if let Some(ca) = &tls.ca_file {
        openssl::x509::X509::stack_from_pem(&read(ca)?)
            .map_err(|e| EtcdError::Tls(format!("{} holds no PEM certificate: {e}", ca.display())))?;
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => {
            openssl::x509::X509::from_pem(&read(c)?)
                .map_err(|e| EtcdError::Tls(format!("{} is not a PEM certificate: {e}", c.display())))?;
            openssl::pkey::PKey::private_key_from_pem(&read(k)?)
                .map_err(|_| EtcdError::Tls(format!("{} is not a PEM private key", k.display())))?;
            Ok(())
        }
        (None, None) => Ok(()),
        _ => Err(EtcdError::Tls("cert_file and key_file go together".into())),
    }
}

impl Registry for EtcdRegistry {
    fn backend(&self) -> Backend {
        Backend::Etcd
    }

    fn add(
        &self,
        url: String,
        capabilities: Vec<Capability>,
        label: Option<Label>,
        source: Source,
    ) -> RegistryFuture<Result<Committed<Orchestrator>, Duplicate>> {
        self.write("add", move |mut w| Box::pin(async move { w.add(&url, capabilities, label, source).await }))
    }

    fn remove(&self, id: OrchestratorId) -> RegistryFuture<Option<Committed<Orchestrator>>> {
        self.write("removal", move |mut w| Box::pin(async move { w.remove(&id, None).await }))
    }

    fn update(
        &self,
        id: OrchestratorId,
        change: OrchestratorChange,
    ) -> RegistryFuture<Option<Committed<Orchestrator>>> {
        self.write("orchestrator change", move |mut w| Box::pin(async move { w.update(&id, &change, None).await }))
    }

    fn put_policy(&self, capability: Capability, policy: CapabilityPolicy) -> RegistryFuture<Committed<()>> {
        self.write("policy write", move |mut w| Box::pin(async move { w.put_policy(&capability, &policy).await }))
    }

    fn delete_policy(&self, capability: Capability) -> RegistryFuture<Option<Committed<()>>> {
        self.write("policy removal", move |mut w| Box::pin(async move { w.delete_policy(&capability).await }))
    }

    fn forget_capability(&self, capability: Capability) -> RegistryFuture<Committed<(usize, bool)>> {
        let shared = self.delete_policy(capability.clone());
        let store = self.inner.store.clone();
        Box::pin(async move {
            let policy = shared.await?;
            let Some(store) = store else { return Err(WriteError::StoreTimeout) };
            let (records, _) = store
                .send(ForgetCapability { capability })
                .timeout(Duration::from_secs(10))
                .await
                .map_err(|_| WriteError::StoreTimeout)??;
            let revision = policy.as_ref().and_then(|c| c.revision);
            Ok(Committed { value: (records, policy.is_some()), revision })
        })
    }

    fn force(&self, key: PairKey, forced: Forced) -> RegistryFuture<Option<Committed<()>>> {
        self.write("forced breaker state", move |mut w| Box::pin(async move { w.force(&key, forced).await }))
    }

    fn reconcile_config(&self, entries: Vec<Listed>) -> RegistryFuture<Committed<Vec<Orchestrator>>> {
        let this = self.clone();
        Box::pin(async move {
            let mut revision = None;
            for listed in entries {
                let label = listed.label.clone();
                match this.add(listed.url, listed.capabilities, listed.label, Source::Config).await? {
                    Ok(c) => {
                        tracing::info!(id = %c.value.id, url = %c.value.url, "orchestrator of the config file added to the fleet's registry");
                        revision = revision.max(c.revision);
                    }
                    // Already registered: the fleet's entry stands, but a label the file gives
                    // is the operator's word (as on one gateway); a file naming none keeps the
                    // entry's. Only config and webhook entries: an admin's entry is the admin's.
                    Err(dup) => {
                        let Some(label) = label else { continue };
                        let change = OrchestratorChange { enabled: None, label: Some(Some(label.clone())) };
                        let id = dup.id.clone();
                        let relabel = this.write("label from the config file", move |mut w| {
                            Box::pin(async move {
                                let Some((o, _)) = w.read(&id).await? else { return Ok(Ok(None)) };
                                if o.label.as_ref() == Some(&label) || o.source == Source::Admin {
                                    return Ok(Ok(None));
                                }
                                w.update(&id, &change, Some(o.source)).await
                            })
                        });
                        if let Some(c) = relabel.await? {
                            revision = revision.max(c.revision);
                        }
                    }
                }
            }
            let (state, _) = this.load().await.map_err(|e| WriteError::Unavailable {
                outcome: Outcome::Unknown,
                detail: format!("{e}; the config file's orchestrators may have been added: read the registry back"),
            })?;
            Ok(Committed { value: state.orchestrators.into_values().collect(), revision: revision.or(state.revision) })
        })
    }

    fn apply_webhook(
        &self,
        add: Vec<Listed>,
        relabel: Vec<(OrchestratorId, Label)>,
        remove: Vec<OrchestratorId>,
    ) -> RegistryFuture<Committed<WebhookDelta>> {
        let this = self.clone();
        Box::pin(async move {
            let mut delta = WebhookDelta::default();
            let mut revision = None;
            for listed in add {
                if let Ok(c) = this.add(listed.url, Vec::new(), listed.label, Source::Webhook).await? {
                    revision = revision.max(c.revision);
                    delta.added.push(c.value);
                }
            }
            for (id, label) in relabel {
                // Only the webhook's own entries: a reload may have adopted one meanwhile.
                let change = OrchestratorChange { enabled: None, label: Some(Some(label)) };
                let only_webhook = this.write("label from the webhook", move |mut w| {
                    Box::pin(async move { w.update(&id, &change, Some(Source::Webhook)).await })
                });
                if let Some(c) = only_webhook.await? {
                    revision = revision.max(c.revision);
                    delta.relabelled.push(c.value);
                }
            }
            for id in remove {
                let only_webhook = this
                    .write("removal", move |mut w| Box::pin(async move { w.remove(&id, Some(Source::Webhook)).await }));
                if let Some(c) = only_webhook.await? {
                    revision = revision.max(c.revision);
                    delta.removed.push(c.value);
                }
            }
            Ok(Committed { value: delta, revision })
        })
    }
}

/// Reads every key under `prefix` (a bounded helper for the watch and the membership list).
pub(crate) async fn read_prefix(
    client: &Client,
    prefix: String,
) -> Result<etcd_client::GetResponse, etcd_client::Error> {
    client.kv_client().get(prefix, Some(GetOptions::new().with_prefix())).await
}
