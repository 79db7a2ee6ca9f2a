//! Supervision: a pair actor that stops is restarted by actix supervision with its learned
//! state, the restart is visible, and routing continues through it.

use byoc_actors::supervisor::CrashPair;

use crate::support::*;

#[actix_web::test]
async fn a_stopped_pair_actor_is_restarted_and_routing_continues() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    for i in 0..3 {
        assert_eq!(gw.job("depth", &format!("before{i}")).await.status, 200);
    }
    let orch = gw.pair("depth", &a.url).await["orchestrator"].as_str().expect("id").to_string();

    gw.gw
        .supervisor
        .send(CrashPair { orchestrator: orch.clone(), capability: "depth".into() })
        .await
        .expect("supervisor answers")
        .expect("pair exists");

    let pair = eventually("restart visible in /admin/pairs", 250, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["restarts"] == 1).then_some(p)
    })
    .await;
    // Learned state survives the restart (the same struct is reused).
    assert_eq!(pair["counters"]["success"], 3, "{pair}");
    let sup = gw.admin_get("/admin/supervisor").await.json();
    assert_eq!(sup["restarts_total"], 1, "{sup}");
    assert_eq!(sup["restarted_pairs"][0]["orchestrator"], orch.as_str());

    // The only orchestrator is reached through the restarted actor.
    let ans = gw.job("depth", "after").await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    assert_eq!(a.state.stats("depth").ok, 4);
    let metrics = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("byoc_gateway_actor_restarts_total"));
}
