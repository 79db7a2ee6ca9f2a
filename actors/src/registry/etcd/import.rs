//! Migration from a single gateway: a store export's registry (orchestrators with their ids,
//! runtime policies) written into a fleet's etcd. Checked first, then written in transactions
//! each of which commits only if none of its keys exists yet, so an import that races another
//! (or is run twice) refuses instead of overwriting; the id counter moves past the imported ids.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::keys::{encode, id_number};
use super::{EtcdError, Inner};
use crate::store::StoreExport;

/// Operations per transaction (etcd's default `--max-txn-ops` is 128).
const OPS_PER_TXN: usize = 96;

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// Orchestrators written.
    pub orchestrators: usize,
    /// Policies written.
    pub policies: usize,
    /// The revision of the last transaction.
    pub revision: i64,
}

pub(super) async fn run(inner: &Inner, export: &StoreExport) -> Result<Imported, EtcdError> {
    let fail = |detail: String| EtcdError::Unreachable { endpoints: inner.settings.endpoints.join(","), detail };
    let client = inner.client().await.map_err(|e| fail(e.to_string()))?;
    let (state, _) = super::watch::load(&client, &inner.keys).await.map_err(|e| fail(e.to_string()))?;
    let urls: std::collections::HashSet<&str> = state.orchestrators.values().map(|o| o.url.as_str()).collect();
    for o in &export.orchestrators {
        crate::orchestrator::normalize_url(&o.url).map_err(|e| fail(format!("the export is not importable: {e}")))?;
        if state.orchestrators.contains_key(&o.id) || urls.contains(o.url.as_str()) {
            return Err(fail(format!(
                "conflict: {} ({}) is already in the fleet's registry under {}; nothing was imported",
                o.id,
                o.url,
                inner.keys.prefix()
            )));
        }
    }
    let by = &inner.settings.replica_id;
    let mut guarded: Vec<(String, Vec<u8>)> = Vec::new();
    for o in &export.orchestrators {
        guarded.push((inner.keys.orchestrator(&o.id), encode(o, by)));
        guarded.push((inner.keys.url(&o.url), o.id.0.as_bytes().to_vec()));
    }
    for p in &export.policies {
        guarded.push((inner.keys.policy(&p.capability), encode(&p.policy, by)));
    }
    let mut kv = client.kv_client();
    let mut revision = 0;
    let total = guarded.len();
    for (i, chunk) in guarded.chunks(OPS_PER_TXN / 2).enumerate() {
        let txn = Txn::new()
            .when(chunk.iter().map(|(k, _)| Compare::version(k.clone(), CompareOp::Equal, 0)).collect::<Vec<_>>())
            .and_then(
                chunk
                    .iter()
                    .map(|(k, v)| TxnOp::put(k.clone(), v.clone(), None))
                    .chain([TxnOp::put(inner.keys.revision(), by.as_bytes().to_vec(), None)])
                    .collect::<Vec<_>>(),
            );
        let resp = kv
            .txn(txn)
            .await
            .map_err(|e| fail(format!("import stopped after {} of {total} keys: {e}", i * OPS_PER_TXN / 2)))?;
        if !resp.succeeded() {
            return Err(fail(format!(
                "import stopped after {} of {total} keys: another writer registered some of them meanwhile",
                i * OPS_PER_TXN / 2
            )));
        }
        revision = resp.header().map_or(revision, |h| h.revision());
    }
    // The counter past the highest imported id, unless it is already further.
    let highest = export.orchestrators.iter().filter_map(|o| id_number(&o.id)).max().unwrap_or(0);
    loop {
        let current = kv.get(inner.keys.next_id(), None).await.map_err(|e| fail(e.to_string()))?;
        let (n, rev) = current.kvs().first().map_or((0, 0), |kv| {
            (
                std::str::from_utf8(kv.value()).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0),
                kv.mod_revision(),
            )
        });
        if n > highest {
            break;
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(inner.keys.next_id(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(inner.keys.next_id(), (highest + 1).to_string(), None)]);
        if kv.txn(txn).await.map_err(|e| fail(e.to_string()))?.succeeded() {
            break;
        }
    }
    Ok(Imported { orchestrators: export.orchestrators.len(), policies: export.policies.len(), revision })
}
