//! Bad input on the public API: a clear JSON error with the documented status, and nothing
//! sent upstream.

use base64::Engine as _;
use serde_json::json;

use crate::support::*;

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

async fn post_with_header(gw: &TestGateway, path: &str, header: Option<&str>) -> Answer {
    let mut req = gw.client.post(format!("{}{path}", gw.http));
    if let Some(h) = header {
        req = req.insert_header(("Livepeer", h));
    }
    read(req.send_body("{}").await).await
}

#[actix_web::test]
async fn malformed_missing_and_incomplete_headers_are_400s_that_reach_no_orchestrator() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    let p = "/process/request/depth";

    post_with_header(&gw, p, None).await.error(400, "missing-livepeer-header");
    post_with_header(&gw, p, Some("%%%not base64%%%")).await.error(400, "invalid-livepeer-header");
    post_with_header(&gw, p, Some(&base64::engine::general_purpose::STANDARD.encode("not json")))
        .await
        .error(400, "invalid-livepeer-header");
    post_with_header(&gw, p, Some(&b64(&json!([1, 2])))).await.error(400, "invalid-livepeer-header");
    post_with_header(&gw, p, Some(&b64(&json!({"capability": "depth"})))).await.error(400, "missing-timeout");
    post_with_header(&gw, p, Some(&b64(&json!({"capability": "depth", "timeout_seconds": 0}))))
        .await
        .error(400, "missing-timeout");
    post_with_header(&gw, p, Some(&b64(&json!({"timeout_seconds": 5})))).await.error(400, "missing-capability");
    let long = "x".repeat(5000);
    post_with_header(&gw, p, Some(&b64(&json!({"capability": long, "timeout_seconds": 5}))))
        .await
        .error(400, "invalid-capability");
    post_with_header(&gw, p, Some(&b64(&json!({"capability": "a b", "timeout_seconds": 5}))))
        .await
        .error(400, "invalid-capability");

    assert_eq!(a.state.stats("depth").jobs, 0, "no bad request may reach an orchestrator");
}

#[actix_web::test]
async fn unknown_capability_is_a_prompt_404_and_leaves_no_pairs_behind() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    for i in 0..3 {
        gw.job("no-such-capability", &format!("j{i}")).await.error(404, "unknown-capability");
    }
    assert!(gw.pairs("no-such-capability").await.is_empty(), "probe pairs of an unserved capability are dropped");
    let sup = gw.admin_get("/admin/supervisor").await.json();
    assert_eq!(sup["pair_actors"], 1, "{sup}");
    // The metrics label of an unknown capability is bounded.
    let metrics = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(!text.contains("no-such-capability"), "client-chosen names must not become labels");
    assert!(text.contains("capability=\"unknown\""));
}

#[actix_web::test]
async fn oversize_body_is_413_and_wrong_method_is_405() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| c.limits.max_body_bytes = 1024).await;
    let req = gw
        .client
        .post(format!("{}/process/request/depth", gw.http))
        .insert_header(("Livepeer", job_header("depth", "big")));
    read(req.send_body(vec![b'x'; 4096]).await).await.error(413, "body-too-large");
    read(gw.client.get(format!("{}/process/request/depth", gw.http)).send().await)
        .await
        .error(405, "method-not-allowed");
    read(gw.client.get(format!("{}/nope", gw.http)).send().await).await.error(404, "not-found");
    assert_eq!(a.state.stats("depth").jobs, 0);
    // A body at the limit is fine.
    let req = gw
        .client
        .post(format!("{}/process/request/depth", gw.http))
        .insert_header(("Livepeer", job_header("depth", "ok")));
    let ans = read(req.send_body(vec![b'x'; 1024]).await).await;
    assert_eq!(ans.status, 200);
    assert_eq!(ans.json()["body_bytes"], 1024);
}

#[actix_web::test]
async fn health_and_readiness() {
    let gw = gateway(&[]).await;
    let h = read(gw.client.get(format!("{}/healthz", gw.http)).send().await).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    let r = read(gw.client.get(format!("{}/readyz", gw.http)).send().await).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");
}

#[actix_web::test]
async fn dot_segments_and_encoded_separators_in_the_path_are_400s_that_reach_no_orchestrator() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    let header = job_header("depth", "dots");
    for path in [
        "/process/request/depth/../../_control",
        "/process/request/depth/%2e%2e/%2E%2E/_control",
        "/process/request/depth/..%2f..%2f_control",
        "/process/request/depth/.%2e/x",
        "/process/request/depth/./x",
        "/process/request/../depth",
        "/process/request/depth/a%5cb",
        "/process/request/depth/a%00b",
        "/process/request/depth/a%2Fb",
        "/process/request/depth//x",
    ] {
        let ans = post_with_header(&gw, path, Some(&header)).await;
        let v = ans.error(400, "invalid-path");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("path")), "{path}: {v}");
    }
    assert_eq!(a.state.stats("depth").jobs, 0, "nothing was sent upstream");
    // Dots inside a name, and encoded characters other than separators, are ordinary paths (the
    // simulator's router decodes the path it echoes).
    for (path, forwarded) in
        [("/process/request/depth/v1..2/a.b", "depth/v1..2/a.b"), ("/process/request/depth/a%2Eb", "depth/a.b")]
    {
        let ans = post_with_header(&gw, path, Some(&header)).await;
        assert_eq!(ans.status, 200, "{path}: {}", String::from_utf8_lossy(&ans.body));
        assert_eq!(ans.json()["path"], forwarded);
    }
}
