//! The registry watch: every change any replica commits reaches this replica's supervisor,
//! in revision order, as [`WatchEvents`]; a resync hands it the whole registry as
//! [`Resynced`].
//!
//! Liveness: a watch on a partitioned etcd can stay open without a word, so the watch asks etcd
//! for a progress report every second and gives up on it after [`SILENCE`] without any answer;
//! the copy is then stale and writes are refused until the watch is back. Where it resumes is
//! [`WatchCursor`]'s decision.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use etcd_client::{Client, EventType, WatchOptions};

use super::cursor::{Next, WatchCursor};
use super::keys::{written, Keys, Named};
use super::Inner;
use crate::metrics as m;
use crate::registry::{Change, RegistryState};

/// A watch that hears nothing (not even a progress report) for this long is given up.
const SILENCE: Duration = Duration::from_secs(3);
/// How often the watch asks for a progress report.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Changes committed at up to `revision`, in order, each with when its writer wrote it (Unix
/// ms on the writer's clock, for the apply-time metric).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct WatchEvents {
    /// The highest revision among these changes.
    pub revision: i64,
    /// The changes.
    pub changes: Vec<(Change, Option<u64>)>,
}

/// The whole registry as read by a resync; the supervisor applies the difference.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Resynced {
    /// The registry.
    pub state: RegistryState,
}

/// Reads the whole registry: the state (at the registry revision it reflects) and the etcd
/// revision of the read (where a watch resumes).
pub(crate) async fn load(client: &Client, keys: &Keys) -> Result<(RegistryState, i64), etcd_client::Error> {
    let resp = super::read_prefix(client, keys.registry()).await?;
    let read_at = resp.header().map_or(0, |h| h.revision());
    let (mut state, errors) = keys.state(resp.kvs().iter().map(|kv| (kv.key(), kv.value())));
    for e in errors {
        tracing::error!(error = %e, "registry record unreadable; skipped");
    }
    state.revision = resp.kvs().iter().find(|kv| keys.name(kv.key()) == Named::Revision).map(|kv| kv.mod_revision());
    Ok((state, read_at))
}

/// The watch loop: runs until the etcd thread stops.
pub(super) async fn run(
    inner: Arc<Inner>,
    mut cursor: WatchCursor,
    events: Recipient<WatchEvents>,
    resynced: Recipient<Resynced>,
) {
    let mut first = true;
    loop {
        let result = match cursor.next() {
            Next::Resync => resync(&inner, &mut cursor, &resynced).await,
            Next::Resume(from) => {
                if !first {
                    metrics::counter!(m::REGISTRY_WATCH_RESTARTS_TOTAL, "how" => "resumed").increment(1);
                }
                follow(&inner, &mut cursor, from, &events).await
            }
        };
        first = false;
        let now = crate::clock::unix_ms_now();
        match result {
            Ok(()) => {}
            Err(why) => {
                let was_connected = inner.status.get().writable();
                inner.status.update(|s| s.disconnected(now, why.clone()));
                if was_connected {
                    tracing::error!(error = %why, revision = cursor.seen(),
                        "etcd unreachable: routing goes on with the registry as last applied; registry writes are refused until it returns");
                }
                tokio::time::sleep(cursor.failed()).await;
            }
        }
    }
}

/// Reads the whole registry and hands it to the supervisor.
async fn resync(inner: &Inner, cursor: &mut WatchCursor, resynced: &Recipient<Resynced>) -> Result<(), String> {
    let client = inner.client().await.map_err(|e| format!("cannot reach etcd: {}", super::outcome::describe(&e)))?;
    let (state, read_at) = tokio::time::timeout(inner.settings.request_timeout, load(&client, &inner.keys))
        .await
        .map_err(|_| "no answer to the registry read".to_string())?
        .map_err(|e| format!("registry read failed: {}", super::outcome::describe(&e)))?;
    tracing::info!(revision = ?state.revision, orchestrators = state.orchestrators.len(),
        policies = state.policies.len(), "registry resynced from etcd");
    metrics::counter!(m::REGISTRY_WATCH_RESTARTS_TOTAL, "how" => "resynced").increment(1);
    resynced.do_send(Resynced { state });
    cursor.resynced(read_at);
    Ok(())
}

/// Watches from `from` until the watch breaks (an error) or etcd compacted the history it needs
/// (`Ok`, with the cursor set to resync).
async fn follow(
    inner: &Inner,
    cursor: &mut WatchCursor,
    from: i64,
    events: &Recipient<WatchEvents>,
) -> Result<(), String> {
    let client = inner.client().await.map_err(|e| format!("cannot reach etcd: {}", super::outcome::describe(&e)))?;
    let options = WatchOptions::new().with_prefix().with_start_revision(from).with_progress_notify();
    let (mut watcher, mut stream) = tokio::time::timeout(
        inner.settings.request_timeout,
        client.watch_client().watch(inner.keys.registry(), Some(options)),
    )
    .await
    .map_err(|_| "no answer to the watch request".to_string())?
    .map_err(|e| format!("watch failed: {}", super::outcome::describe(&e)))?;
    // etcd acknowledged the watch: the copy follows the registry again (the changes missed
    // while away come first on the stream).
    cursor.established();
    let was = inner.status.get();
    inner.status.update(|s| s.connected(crate::clock::unix_ms_now()));
    if !was.writable() {
        tracing::warn!(from, "etcd reachable again: the registry watch resumed; writes accepted");
    }
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = stream.message() => {
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => return Err("the watch stream ended".into()),
                    Err(e) => return Err(format!("watch broke: {}", super::outcome::describe(&e))),
                };
                heard = tokio::time::Instant::now();
                if resp.compact_revision() > 0 {
                    tracing::warn!(from, compacted = resp.compact_revision(),
                        "etcd compacted the registry history this replica needed: resyncing");
                    cursor.compacted();
                    return Ok(());
                }
                if resp.canceled() {
                    return Err(format!("etcd cancelled the watch: {}", resp.cancel_reason()));
                }
                deliver(inner, cursor, &resp, events);
            }
            _ = progress.tick() => {
                if heard.elapsed() > SILENCE {
                    return Err(format!("etcd did not answer for {}s", SILENCE.as_secs()));
                }
                if watcher.request_progress().await.is_err() {
                    return Err("the watch stream closed".into());
                }
            }
        }
    }
}

/// Turns a watch response into changes for the supervisor.
fn deliver(
    inner: &Inner,
    cursor: &mut WatchCursor,
    resp: &etcd_client::WatchResponse,
    events: &Recipient<WatchEvents>,
) {
    let mut changes = Vec::new();
    let mut revision = 0;
    for ev in resp.events() {
        let Some(kv) = ev.kv() else { continue };
        revision = revision.max(kv.mod_revision());
        let value = (ev.event_type() == EventType::Put).then(|| kv.value());
        match inner.keys.change(kv.key(), value) {
            Some(Ok(change)) => changes.push((change, value.and_then(written).map(|w| w.0).filter(|t| *t > 0))),
            Some(Err(e)) => tracing::error!(error = %e, "registry record unreadable; skipped"),
            None => {}
        }
    }
    // A response without events is a progress report, sent only once the watch has delivered
    // everything up to its header's revision; an event response's header may run ahead of
    // events still to come, so only the events' own revisions move the cursor then.
    if resp.events().is_empty() {
        if let Some(h) = resp.header() {
            cursor.saw(h.revision());
        }
    }
    cursor.saw(revision);
    if revision > 0 {
        // Even with no change to apply (only the revision marker moved), the supervisor learns
        // the revision, which writers wait for.
        events.do_send(WatchEvents { revision, changes });
    }
}
