//! The registry's layout in etcd, under the fleet's prefix (`/byoc-gateway/` by default, so
//! several fleets can share one etcd), and the records' encoding. Pure: no I/O.
//!
//! ```text
//! {prefix}registry/revision                 touched by every registry write (its mod revision
//!                                           is the revision the registry reflects)
//! {prefix}registry/next-id                  the next orchestrator number (orch-N)
//! {prefix}registry/orchestrators/{id}       an orchestrator record
//! {prefix}registry/urls/{url}               -> id (a URL is registered once)
//! {prefix}registry/policies/{capability}    a runtime capability policy
//! {prefix}registry/trips/{id}/{capability}  a forced breaker state (trip with expiry, or reset)
//! {prefix}replicas/{replica id}             a replica's record, under its lease
//! ```
//!
//! Values are JSON envelopes ([`Envelope`]): the record, when and by which replica it was
//! written. Records decode with serde defaults and ignore unknown fields, so a newer replica
//! may add a field (an operator label, say) without an older one refusing the record.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::orchestrator::{Orchestrator, OrchestratorId};
use crate::pair::PairKey;
use crate::policy::CapabilityPolicy;
use crate::registry::{Change, Forced, RegistryState};

/// A record as stored: what, when (Unix ms on the writer's clock), by whom.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) record: T,
    #[serde(default)]
    pub(crate) written_at_unix_ms: u64,
    #[serde(default)]
    pub(crate) written_by: String,
}

/// Why a stored value could not be read (logged and skipped: one bad record must not stop a
/// replica from applying the others).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry key {key}: {detail}")]
pub(crate) struct DecodeError {
    pub(crate) key: String,
    pub(crate) detail: String,
}

/// The keys of one fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
}

/// What a registry key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Named {
    Revision,
    NextId,
    Orchestrator(OrchestratorId),
    Url,
    Policy(Capability),
    Trip(PairKey),
    /// Unknown to this version (written by a newer one): ignored.
    Other,
}

impl Keys {
    /// The keys under `prefix` (given with or without its trailing `/`).
    pub(crate) fn new(prefix: &str) -> Self {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { prefix }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Everything the registry watch covers.
    pub(crate) fn registry(&self) -> String {
        format!("{}registry/", self.prefix)
    }

    pub(crate) fn revision(&self) -> String {
        format!("{}registry/revision", self.prefix)
    }

    pub(crate) fn next_id(&self) -> String {
        format!("{}registry/next-id", self.prefix)
    }

    pub(crate) fn orchestrators(&self) -> String {
        format!("{}registry/orchestrators/", self.prefix)
    }

    pub(crate) fn orchestrator(&self, id: &OrchestratorId) -> String {
        format!("{}registry/orchestrators/{id}", self.prefix)
    }

    pub(crate) fn url(&self, url: &str) -> String {
        format!("{}registry/urls/{url}", self.prefix)
    }

    pub(crate) fn policy(&self, cap: &Capability) -> String {
        format!("{}registry/policies/{cap}", self.prefix)
    }

    /// The forced states of one orchestrator's pairs (removed with it).
    pub(crate) fn trips_of(&self, id: &OrchestratorId) -> String {
        format!("{}registry/trips/{id}/", self.prefix)
    }

    pub(crate) fn trip(&self, key: &PairKey) -> String {
        format!("{}registry/trips/{}/{}", self.prefix, key.orchestrator, key.capability)
    }

    pub(crate) fn replicas(&self) -> String {
        format!("{}replicas/", self.prefix)
    }

    pub(crate) fn replica(&self, id: &str) -> String {
        format!("{}replicas/{id}", self.prefix)
    }

    /// What `key` names (keys outside the registry are [`Named::Other`]).
    pub(crate) fn name(&self, key: &[u8]) -> Named {
        let Ok(key) = std::str::from_utf8(key) else { return Named::Other };
        let Some(rest) = key.strip_prefix(&self.prefix).and_then(|k| k.strip_prefix("registry/")) else {
            return Named::Other;
        };
        if rest == "revision" {
            return Named::Revision;
        }
        if rest == "next-id" {
            return Named::NextId;
        }
        if let Some(id) = rest.strip_prefix("orchestrators/") {
            return if id.is_empty() || id.contains('/') {
                Named::Other
            } else {
                Named::Orchestrator(OrchestratorId(id.into()))
            };
        }
        if rest.starts_with("urls/") {
            return Named::Url;
        }
        if let Some(name) = rest.strip_prefix("policies/") {
            return Capability::new(name).map_or(Named::Other, Named::Policy);
        }
        if let Some(pair) = rest.strip_prefix("trips/") {
            if let Some((orch, cap)) = pair.split_once('/') {
                if let (false, Ok(capability)) = (orch.is_empty(), Capability::new(cap)) {
                    return Named::Trip(PairKey { orchestrator: OrchestratorId(orch.into()), capability });
                }
            }
        }
        Named::Other
    }

    /// The change a watch event makes: a put with its value, or a delete (`value: None`).
    /// `None` for keys that change nothing a replica applies (the id counter, the URL index,
    /// the revision marker, unknown keys).
    pub(crate) fn change(&self, key: &[u8], value: Option<&[u8]>) -> Option<Result<Change, DecodeError>> {
        let named = self.name(key);
        let decode_err = |detail: String| DecodeError { key: String::from_utf8_lossy(key).into_owned(), detail };
        match (named, value) {
            (Named::Orchestrator(id), None) => Some(Ok(Change::OrchestratorRemoved(id))),
            (Named::Orchestrator(id), Some(v)) => Some(decode::<Orchestrator>(v).map_err(decode_err).and_then(|o| {
                if o.id == id {
                    Ok(Change::Orchestrator(o))
                } else {
                    Err(decode_err(format!("the record's id is {}", o.id)))
                }
            })),
            (Named::Policy(cap), None) => Some(Ok(Change::PolicyRemoved(cap))),
            (Named::Policy(cap), Some(v)) => {
                Some(decode::<CapabilityPolicy>(v).map(|p| Change::Policy(cap, Box::new(p))).map_err(decode_err))
            }
            // Trips go with their orchestrator (a prefix delete); a reset is a put.
            (Named::Trip(_), None) => None,
            (Named::Trip(key), Some(v)) => {
                Some(decode::<Forced>(v).map(|f| Change::Forced(key, f)).map_err(decode_err))
            }
            _ => None,
        }
    }

    /// The registry from a range read of [`Keys::registry`]: the records that decode (the
    /// others are returned as errors to log), at `revision`.
    pub(crate) fn state<'a>(
        &self,
        kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> (RegistryState, Vec<DecodeError>) {
        let mut state = RegistryState::default();
        let mut errors = Vec::new();
        for (k, v) in kvs {
            match self.change(k, Some(v)) {
                Some(Ok(change)) => state.apply(&change),
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
        (state, errors)
    }
}

/// The record inside an envelope (a bare record is accepted too).
pub(crate) fn decode<T: DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Only<T> {
        record: T,
    }
    match serde_json::from_slice::<Only<T>>(value) {
        Ok(e) => Ok(e.record),
        Err(first) => serde_json::from_slice::<T>(value).map_err(|_| first.to_string()),
    }
}

/// When and by whom a value was written (`None` for a bare record).
pub(crate) fn written(value: &[u8]) -> Option<(u64, String)> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default)]
        written_at_unix_ms: u64,
        #[serde(default)]
        written_by: String,
    }
    serde_json::from_slice::<Meta>(value).ok().map(|m| (m.written_at_unix_ms, m.written_by))
}

/// Encodes a record in its envelope.
pub(crate) fn encode<T: Serialize>(record: &T, written_by: &str) -> Vec<u8> {
    let envelope =
        Envelope { record, written_at_unix_ms: crate::clock::unix_ms_now(), written_by: written_by.to_string() };
    // Plain data: serialisation cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// The number of an `orch-N` id (`None` for any other shape, such as an imported id).
pub(crate) fn id_number(id: &OrchestratorId) -> Option<u64> {
    id.0.strip_prefix("orch-").and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::Source;

    fn orch(id: &str) -> Orchestrator {
        Orchestrator {
            id: OrchestratorId(id.into()),
            url: "http://a:1".into(),
            capabilities: vec![Capability::new("depth").expect("valid")],
            added_at: 5,
            source: Source::Admin,
            enabled: true,
            label: None,
        }
    }

    #[test]
    fn keys_name_what_they_hold_under_the_prefix_only() {
        let k = Keys::new("/fleet-a");
        assert_eq!(k.prefix(), "/fleet-a/");
        let id = OrchestratorId("orch-3".into());
        assert_eq!(k.name(k.orchestrator(&id).as_bytes()), Named::Orchestrator(id.clone()));
        assert_eq!(k.name(k.url("http://a:1").as_bytes()), Named::Url);
        assert_eq!(k.name(k.revision().as_bytes()), Named::Revision);
        assert_eq!(k.name(k.next_id().as_bytes()), Named::NextId);
        let cap = Capability::new("depth").expect("valid");
        assert_eq!(k.name(k.policy(&cap).as_bytes()), Named::Policy(cap.clone()));
        let pair = PairKey { orchestrator: id.clone(), capability: cap };
        assert_eq!(k.name(k.trip(&pair).as_bytes()), Named::Trip(pair.clone()));
        assert!(k.trip(&pair).starts_with(&k.trips_of(&id)));
        // Another fleet's keys, a replica record, junk: nothing to apply.
        let other = Keys::new("/fleet-b/");
        assert_eq!(k.name(other.orchestrator(&id).as_bytes()), Named::Other);
        assert_eq!(k.name(k.replica("r1").as_bytes()), Named::Other);
        assert_eq!(k.name(b"/fleet-a/registry/policies/bad name"), Named::Other);
        assert_eq!(k.name(b"/fleet-a/registry/orchestrators/a/b"), Named::Other);
        assert_eq!(k.name(&[0xff, 0xfe]), Named::Other);
    }

    #[test]
    fn events_become_changes_and_bad_records_are_errors_not_panics() {
        let k = Keys::new("/p/");
        let o = orch("orch-1");
        let key = k.orchestrator(&o.id);
        let put = k.change(key.as_bytes(), Some(&encode(&o, "r1")));
        assert_eq!(put, Some(Ok(Change::Orchestrator(o.clone()))));
        assert_eq!(k.change(key.as_bytes(), None), Some(Ok(Change::OrchestratorRemoved(o.id.clone()))));
        // A record under another id's key is refused.
        let wrong = k.change(k.orchestrator(&OrchestratorId("orch-2".into())).as_bytes(), Some(&encode(&o, "r1")));
        assert!(matches!(wrong, Some(Err(_))));
        assert!(matches!(k.change(key.as_bytes(), Some(b"{not json")), Some(Err(_))));
        // The operator's label is part of the record, for every replica.
        let labelled =
            Orchestrator { label: Some(crate::orchestrator::Label::new("team-a").expect("valid")), ..o.clone() };
        let put = k.change(key.as_bytes(), Some(&encode(&labelled, "r1")));
        assert_eq!(put, Some(Ok(Change::Orchestrator(labelled))));
        // A newer replica's extra field is ignored.
        let mut v: serde_json::Value = serde_json::from_slice(&encode(&o, "r1")).expect("json");
        v["record"]["field_of_a_later_version"] = "x".into();
        let newer = serde_json::to_vec(&v).expect("json");
        assert_eq!(k.change(key.as_bytes(), Some(&newer)), Some(Ok(Change::Orchestrator(o.clone()))));
        assert_eq!(written(&newer).map(|w| w.1), Some("r1".to_string()));
        // Index and counter keys change nothing.
        assert_eq!(k.change(k.url("http://a:1").as_bytes(), Some(b"orch-1")), None);
        assert_eq!(k.change(k.next_id().as_bytes(), Some(b"2")), None);
        let pair = PairKey { orchestrator: o.id.clone(), capability: Capability::new("depth").expect("valid") };
        let trip = k.change(k.trip(&pair).as_bytes(), Some(&encode(&Forced::Trip { until_unix_ms: Some(9) }, "r")));
        assert_eq!(trip, Some(Ok(Change::Forced(pair.clone(), Forced::Trip { until_unix_ms: Some(9) }))));
        assert_eq!(k.change(k.trip(&pair).as_bytes(), None), None);
    }

    #[test]
    fn a_range_read_becomes_the_state_skipping_what_does_not_decode() {
        let k = Keys::new("/p/");
        let o = orch("orch-1");
        let cap = Capability::new("depth").expect("valid");
        let rows: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (k.orchestrator(&o.id).into_bytes(), encode(&o, "r")),
            (k.url(&o.url).into_bytes(), b"orch-1".to_vec()),
            (k.policy(&cap).into_bytes(), encode(&CapabilityPolicy::default(), "r")),
            (k.orchestrator(&OrchestratorId("orch-9".into())).into_bytes(), b"garbage".to_vec()),
        ];
        let (state, errors) = k.state(rows.iter().map(|(a, b)| (a.as_slice(), b.as_slice())));
        assert_eq!(state.orchestrators.len(), 1);
        assert_eq!(state.policies.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(id_number(&o.id), Some(1));
        assert_eq!(id_number(&OrchestratorId("imported".into())), None);
    }
}
