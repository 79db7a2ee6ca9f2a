//! What operators see of Live Runner (issue 28 item 5) beyond `/admin/pairs` and
//! `/admin/sessions`: metrics per app, labelled only with app names discovery found (a client
//! naming apps cannot mint series), and operator aliases routing to the app they name.

use byoc_sim::RunnerSpec;

use super::*;

async fn scrape(gw: &TestGateway) -> String {
    let m = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
    assert_eq!(m.status, 200);
    String::from_utf8_lossy(&m.body).into_owned()
}

/// The value of the series `series` (its full name and labels, as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[actix_web::test]
async fn metrics_are_per_discovered_app_and_aliases_route_to_their_app() {
    // App names unique to this test: the recorder is process-wide.
    let s = live_sim(
        "o1",
        &[RunnerSpec::single_shot("call-1", "metrics/echo", 2), RunnerSpec::persistent("sess-1", "metrics/sess", 2)],
    );
    let gw = live_gateway(&[&s], |c| {
        c.live_runner.aliases.insert("short".into(), "metrics/echo".into());
    })
    .await;
    let id = gw.orchestrator_id(&s.url).await;
    for r in ["call-1", "sess-1"] {
        gw.runner_until(&format!("{id}:{r}"), "routable", |p| p["routable"] == true).await;
    }

    // By name and by alias: both reach the runner of metrics/echo.
    for app in ["metrics/echo", "short"] {
        let ans = read(gw.client.post(format!("{}/apps/{app}/run", gw.http)).send_body("x").await).await;
        assert_eq!(ans.status, 200, "{app}: {:?}", String::from_utf8_lossy(&ans.body));
        assert_eq!(ans.json()["path"], "/run", "{app}");
        assert!(ans.header("x-gateway-runner").is_some_and(|r| r.ends_with(":call-1")), "{app}");
    }
    // A name no runner serves: a clear 404, and its metrics under `unknown`.
    read(gw.client.post(format!("{}/apps/metrics-nobody-serves/run", gw.http)).send_body("x").await)
        .await
        .error(404, "unknown-app");

    // A session opened and stopped.
    let v = read(gw.client.post(format!("{}/apps/metrics/sess/session", gw.http)).send().await).await.json();
    let control = v["control_url"].as_str().expect("control_url").to_string();
    let text = scrape(&gw).await;
    assert_eq!(value(&text, r#"byoc_gateway_app_sessions{app="metrics/sess"}"#), Some(1.0), "{text}");
    assert_eq!(read(gw.client.post(format!("{control}/stop")).send().await).await.status, 200);

    let text = scrape(&gw).await;
    let calls = r#"byoc_gateway_app_requests_total{app="metrics/echo",kind="call",outcome="success"}"#;
    assert_eq!(value(&text, calls), Some(2.0), "the alias counts under its app:\n{text}");
    let unknown = r#"byoc_gateway_app_requests_total{app="unknown",kind="call",outcome="unknown-app"}"#;
    assert!(value(&text, unknown).is_some_and(|v| v >= 1.0), "{text}");
    assert!(!text.contains("metrics-nobody-serves"), "a client's app name minted a series:\n{text}");
    assert!(!text.contains(r#"app="short""#), "an alias is not a label of its own:\n{text}");
    let opened = r#"byoc_gateway_app_requests_total{app="metrics/sess",kind="session",outcome="success"}"#;
    assert_eq!(value(&text, opened), Some(1.0), "{text}");
    assert_eq!(value(&text, r#"byoc_gateway_app_sessions{app="metrics/sess"}"#), Some(0.0), "{text}");
    let ended = r#"byoc_gateway_app_sessions_ended_total{app="metrics/sess",reason="stopped"}"#;
    assert_eq!(value(&text, ended), Some(1.0), "{text}");
    assert!(text.contains(r#"byoc_gateway_app_request_duration_seconds_bucket{app="metrics/echo",kind="call""#));
}
