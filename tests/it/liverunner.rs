//! Live Runner apps (issue 28), through real HTTP: simulated Live Runner orchestrators
//! (`sim/src/liverunner.rs`) in front of the real gateway.
//!
//! - `discovery`: runners found at registered orchestrators, in `/admin/pairs` with their
//!   record; stale records kept for the grace period, then expired; unreachable, gone and
//!   non-Live-Runner orchestrators.
//! - `payments`: the 402 challenge answered, metered sessions kept funded, both dialects, and
//!   payments through a remote signer.
//! - `apps`: single-shot calls with failover, sessions the gateway owns and always releases.
//! - `operators`: metrics per app, aliases.

mod apps;
mod discovery;
mod operators;
mod payments;

use std::time::Duration;

use byoc_sim::{RunnerSpec, SignerHandle, SimHandle};
use serde_json::Value;

use crate::support::*;

/// A simulator with these Live Runner runners (and no BYOC capability).
pub fn live_sim(name: &str, runners: &[RunnerSpec]) -> SimHandle {
    let s = sim(name, &[]);
    for r in runners {
        s.add_runner(r.clone());
    }
    s
}

/// A gateway in front of `sims`, discovering their runners every 100 ms.
pub async fn live_gateway(sims: &[&SimHandle], adjust: impl FnOnce(&mut byoc_gateway::config::Config)) -> TestGateway {
    let orchestrators: Vec<(&SimHandle, &[&str])> = sims.iter().map(|s| (*s, &[][..])).collect();
    gateway_with(&orchestrators, |c| {
        c.live_runner.discovery_refresh = Duration::from_millis(100);
        c.live_runner.discovery_retry = Duration::from_millis(100);
        c.live_runner.discovery_retry_max = Duration::from_millis(400);
        adjust(c);
    })
    .await
}

impl TestGateway {
    /// The runner pairs of `app`, as `/admin/pairs` lists them.
    pub async fn runners(&self, app: &str) -> Vec<Value> {
        let a = self.admin_get(&format!("/admin/pairs?capability={}", urlencode(app))).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        a.json().as_array().cloned().unwrap_or_default().into_iter().filter(|p| p.get("runner").is_some()).collect()
    }

    /// The runner `id` (`orch-1:route`), once it exists.
    pub async fn runner(&self, id: &str) -> Value {
        eventually(&format!("runner {id} discovered"), 500, || async {
            let a = self.admin_get(&format!("/admin/runners/{id}")).await;
            (a.status == 200).then(|| a.json())
        })
        .await
    }

    /// Waits until runner `id` satisfies `check`; returns its report.
    pub async fn runner_until(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("runner {id}: {what}"), 500, || async {
            let a = self.admin_get(&format!("/admin/runners/{id}")).await;
            (a.status == 200).then(|| a.json()).filter(|v| check(v))
        })
        .await
    }

    /// The registry id of the orchestrator at `url`.
    pub async fn orchestrator_id(&self, url: &str) -> String {
        let list = self.admin_get("/admin/orchestrators").await.json();
        list.as_array()
            .and_then(|a| a.iter().find(|o| o["url"] == url))
            .and_then(|o| o["id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{url} is not registered: {list}"))
    }
}

/// Percent-encodes a query value (app names hold `/`).
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A simulated go-livepeer remote signer paying with the keystore fixture's key.
pub fn remote_signer() -> SignerHandle {
    let key = byoc_actors::protocol::signer::load(
        byoc_actors::protocol::signer::Scheme::V0,
        &keystore_fixture("scrypt.json"),
        &keystore_fixture("password.txt"),
    )
    .expect("the fixture key");
    byoc_sim::start_signer(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"), key).expect("signer")
}

/// `[live_runner.remote_signer]` for `signer` (with a secret header), paying and/or
/// discovering.
pub fn signer_config(signer: &SignerHandle, payments: bool, discovery: bool) -> byoc_gateway::config::RemoteSigner {
    byoc_gateway::config::RemoteSigner {
        url: signer.url.clone(),
        headers: [("Authorization".to_string(), "Bearer signer-secret".to_string())].into(),
        discovery,
        discovery_refresh: Duration::from_millis(100),
        payments,
        timeout: Duration::from_secs(5),
    }
}
