//! The admin API: authentication, registry mutations and their failure paths, pair and
//! supervisor views, metrics.

use std::time::Duration;

use byoc_sim::{Knobs, SimHandle};
use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn admin_requires_the_bearer_token() {
    let gw = gateway(&[]).await;
    let url = format!("{}/admin/orchestrators", gw.admin);
    read(gw.client.get(&url).send().await).await.error(401, "unauthorized");
    read(gw.client.get(&url).bearer_auth("wrong").send().await).await.error(401, "unauthorized");
    read(gw.client.get(&url).insert_header(("Authorization", "Basic dGVzdA==")).send().await)
        .await
        .error(401, "unauthorized");
    // A rejected mutation changes nothing.
    let add = gw.client.post(&url).bearer_auth("wrong").send_json(&json!({"url": "http://127.0.0.1:9"})).await;
    read(add).await.error(401, "unauthorized");
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json(), json!([]));
    // /metrics needs no token.
    assert_eq!(read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await.status, 200);
}

#[actix_web::test]
async fn orchestrator_registry_mutations_and_their_errors() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[]).await;

    let created = gw.admin_post("/admin/orchestrators", json!({"url": a.url, "capabilities": ["depth"]})).await;
    assert_eq!(created.status, 201);
    let orch = created.json();
    assert_eq!(orch["url"], a.url.as_str());
    assert_eq!(orch["capabilities"], json!(["depth"]));
    assert_eq!(orch["source"], "admin");
    assert!(orch["added_at"].as_u64().is_some());
    let id = orch["id"].as_str().expect("id").to_string();

    // Same URL again (also with a trailing slash): 409, nothing added.
    gw.admin_post("/admin/orchestrators", json!({"url": a.url})).await.error(409, "duplicate-orchestrator");
    gw.admin_post("/admin/orchestrators", json!({"url": format!("{}/", a.url)}))
        .await
        .error(409, "duplicate-orchestrator");
    // Bad URLs, bad capability names, bad JSON, wrong field types, unknown fields: 400.
    for bad in ["ftp://x:1", "http://x:1/path", "", "http://"] {
        gw.admin_post("/admin/orchestrators", json!({"url": bad})).await.error(400, "invalid-url");
    }
    gw.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:1", "capabilities": ["no spaces"]}))
        .await
        .error(400, "invalid-capability");
    gw.admin_post("/admin/orchestrators", json!({"url": 5})).await.error(400, "invalid-json");
    gw.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:1", "bogus": true}))
        .await
        .error(400, "invalid-json");
    let raw =
        gw.client.post(format!("{}/admin/orchestrators", gw.admin)).bearer_auth(TOKEN).content_type("application/json");
    read(raw.send_body("{not json").await).await.error(400, "invalid-json");
    let big = "x".repeat(100 * 1024);
    gw.admin_post("/admin/orchestrators", json!({"url": big})).await.error(413, "body-too-large");

    let list = gw.admin_get("/admin/orchestrators").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    gw.admin_delete("/admin/orchestrators/orch-999").await.error(404, "orchestrator-not-found");
    assert_eq!(gw.admin_delete(&format!("/admin/orchestrators/{id}")).await.status, 204);
    gw.admin_delete(&format!("/admin/orchestrators/{id}")).await.error(404, "orchestrator-not-found");
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json(), json!([]));
    read(gw.client.get(format!("{}/admin/nope", gw.admin)).bearer_auth(TOKEN).send().await)
        .await
        .error(404, "not-found");
}

#[actix_web::test]
async fn pairs_supervisor_and_breaker_controls() {
    let a = sim("a", &[("depth", healthy()), ("upscale", healthy())]);
    let gw = gateway(&[(&a, &["depth", "upscale"])]).await;
    assert_eq!(gw.job("depth", "j").await.status, 200);

    let all = gw.admin_get("/admin/pairs").await.json();
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    let depth = gw.pair("depth", &a.url).await;
    for field in [
        "orchestrator",
        "orchestrator_url",
        "capability",
        "breaker",
        "routable",
        "latency_ewma_ms",
        "success_rate",
        "inflight",
        "available_capacity",
        "price_per_unit",
        "pixels_per_unit",
        "cold_start_ms",
        "last_error",
        "restarts",
    ] {
        assert!(depth.get(field).is_some(), "pair view lacks {field}: {depth}");
    }
    assert_eq!(depth["breaker"]["state"], "closed");
    assert_eq!(depth["available_capacity"], 4);
    assert_eq!(depth["counters"]["success"], 1);
    assert!(depth["cold_start_ms"].as_u64().is_some(), "first answer time recorded: {depth}");
    let orch = depth["orchestrator"].as_str().expect("id").to_string();
    let filtered = gw.admin_get(&format!("/admin/pairs?orchestrator={orch}&capability=upscale")).await.json();
    assert_eq!(filtered.as_array().map(Vec::len), Some(1));

    // Trip: the pair leaves rotation, jobs get a 503; reset: it is back.
    let tripped = gw.admin_post(&format!("/admin/pairs/{orch}/depth/trip"), json!({})).await;
    assert_eq!(tripped.status, 200);
    assert_eq!(tripped.json()["breaker"]["state"], "open");
    gw.job("depth", "while-open").await.error(503, "no-routable-orchestrator");
    let reset = gw.admin_post(&format!("/admin/pairs/{orch}/depth/reset"), json!({})).await;
    assert_eq!(reset.json()["breaker"]["state"], "closed");
    assert_eq!(gw.job("depth", "after-reset").await.status, 200);
    gw.admin_post("/admin/pairs/orch-999/depth/trip", json!({})).await.error(404, "pair-not-found");
    gw.admin_post(&format!("/admin/pairs/{orch}/bad%20name/trip"), json!({})).await.error(404, "pair-not-found");

    let sup = gw.admin_get("/admin/supervisor").await.json();
    assert_eq!(sup["orchestrators"], 1);
    assert_eq!(sup["pair_actors"], 2);
    assert_eq!(sup["restarts_total"], 0);
    assert_eq!(sup["pairs_by_state"]["closed"], 2, "{sup}");
}

#[actix_web::test]
async fn metrics_count_requests_by_capability_and_outcome() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    assert_eq!(gw.job("depth", "m").await.status, 200);
    gw.job("nothing-here", "m").await.error(404, "unknown-capability");
    let text = String::from_utf8_lossy(&read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await.body)
        .into_owned();
    // The recorder is process-wide (tests share it), so check presence, not exact totals.
    for needle in [
        "byoc_gateway_requests_total{capability=\"depth\",outcome=\"success\"}",
        "byoc_gateway_requests_total{capability=\"unknown\",outcome=\"unknown-capability\"}",
        "byoc_gateway_request_duration_seconds_bucket{capability=\"depth\"",
        "byoc_gateway_attempts_total{capability=\"depth\",result=\"success\"}",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    // Gauges are refreshed by the supervisor's one-second tick.
    eventually("pair state gauge", 250, || async {
        let m = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
        String::from_utf8_lossy(&m.body).contains("byoc_gateway_pairs{state=\"closed\"}").then_some(())
    })
    .await;
}

#[actix_web::test]
async fn pairs_are_paged_with_limit_and_offset_and_bad_pages_are_refused() {
    let sims: Vec<_> =
        ["a", "b", "c"].iter().map(|n| sim(n, &[("depth", healthy()), ("upscale", healthy())])).collect();
    let decl: Vec<(&SimHandle, &[&str])> = sims.iter().map(|s| (s, &["depth", "upscale"][..])).collect();
    let gw = gateway(&decl).await;

    // Without `limit`: the whole array, as before, with the total in a header and no Link.
    let all = gw.admin_get("/admin/pairs").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.header("x-total-count").as_deref(), Some("6"));
    assert_eq!(all.header("link"), None);
    let key = |p: &serde_json::Value| format!("{}/{}", p["orchestrator"], p["capability"]);
    let expected: Vec<String> = all.json().as_array().expect("array").iter().map(key).collect();
    assert_eq!(expected.len(), 6);

    // Follow `Link: <...>; rel="next"` from the first page of 4: every pair exactly once, in order.
    let mut seen = Vec::new();
    let mut next = Some("/admin/pairs?limit=4".to_string());
    for _ in 0..10 {
        let Some(path) = next.take() else { break };
        let page = gw.admin_get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.header("x-total-count").as_deref(), Some("6"));
        let items = page.json().as_array().expect("array").clone();
        assert!(!items.is_empty() && items.len() <= 4, "{path}: {items:?}");
        seen.extend(items.iter().map(key));
        next = page.header("link").map(|l| {
            let url = l.strip_prefix('<').and_then(|l| l.split_once(">; rel=\"next\"")).expect("next link").0;
            url.to_string()
        });
    }
    assert_eq!(next, None, "the last page has no next link");
    assert_eq!(seen, expected, "every pair exactly once, in the unpaged order");

    // Filters carry over into the next link; past the end is an empty page.
    let depth = gw.admin_get("/admin/pairs?capability=depth&limit=2").await;
    assert_eq!(depth.header("x-total-count").as_deref(), Some("3"));
    assert_eq!(depth.header("link").as_deref(), Some("</admin/pairs?capability=depth&limit=2&offset=2>; rel=\"next\""));
    let past = gw.admin_get("/admin/pairs?limit=5&offset=100").await;
    assert_eq!(past.json(), json!([]));
    assert_eq!(past.header("x-total-count").as_deref(), Some("6"));

    // Bad pages: a 400 JSON error, nothing changed.
    for bad in ["limit=0", "limit=1001", "limit=abc", "limit=-1", "offset=x", "offset=-3", "page=2"] {
        gw.admin_get(&format!("/admin/pairs?{bad}")).await.error(400, "invalid-query");
    }
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json().as_array().map(Vec::len), Some(3));
    assert_eq!(gw.admin_get("/admin/supervisor").await.json()["pair_actors"], 6);
}

#[actix_web::test]
async fn without_a_token_the_admin_api_refuses_cross_site_and_rebound_requests() {
    let gw = gateway_with(&[], |c| c.admin_token = None).await;
    let port = gw.admin.rsplit(':').next().expect("port").to_string();
    let url = format!("{}/admin/orchestrators", gw.admin);
    let body = r#"{"url":"http://127.0.0.1:9"}"#;

    // A form-like cross-site POST (text/plain needs no CORS preflight) from a foreign page.
    let ans = read(
        gw.client
            .post(&url)
            .insert_header(("Origin", "http://evil.example"))
            .insert_header(("Content-Type", "text/plain"))
            .send_body(body)
            .await,
    )
    .await;
    ans.error(403, "foreign-origin");
    // Same without an Origin header: still not JSON.
    let ans = read(gw.client.post(&url).insert_header(("Content-Type", "text/plain")).send_body(body).await).await;
    ans.error(415, "json-required");
    // A DNS-rebinding page reaches the listener under a foreign name: reads are refused too.
    let ans = read(gw.client.get(&url).insert_header(("Host", format!("evil.example:{port}"))).send().await).await;
    ans.error(403, "foreign-host");
    let metrics =
        read(gw.client.get(format!("{}/metrics", gw.admin)).insert_header(("Host", "evil.example")).send().await).await;
    metrics.error(403, "foreign-host");
    assert_eq!(read(gw.client.get(&url).send().await).await.json(), json!([]), "nothing was added");

    // The listener's own address, loopback names, same-origin JSON: accepted.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "localhost".to_string()] {
        assert_eq!(read(gw.client.get(&url).insert_header(("Host", host)).send().await).await.status, 200);
    }
    let ans = read(
        gw.client
            .post(&url)
            .insert_header(("Origin", format!("http://127.0.0.1:{port}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
            .await,
    )
    .await;
    assert_eq!(ans.status, 201, "{}", String::from_utf8_lossy(&ans.body));
    let trip = read(gw.client.post(format!("{}/admin/reload", gw.admin)).send().await).await;
    trip.error(415, "json-required");
}

#[actix_web::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let gw = gateway(&[]).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let ans = read(
            gw.client
                .get(format!("{}/admin/orchestrators", gw.admin))
                .insert_header(("Authorization", format!("{scheme} {TOKEN}")))
                .send()
                .await,
        )
        .await;
        assert_eq!(ans.status, 200, "{scheme}");
    }
}

#[actix_web::test]
async fn an_admin_body_sent_too_slowly_gets_a_408_and_the_connection_back() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let gw = gateway_with(&[], |c| c.limits.body_read_timeout = std::time::Duration::from_millis(300)).await;
    let addr = gw.admin.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /admin/orchestrators HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    // The gateway answers and closes: read to the end (bounded by the test's own timeout).
    tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("answered within the bound")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request-timeout"), "a JSON error: {text}");
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json(), json!([]), "nothing was added");
}

#[actix_web::test]
async fn an_orchestrator_address_too_long_for_any_host_is_refused_without_echoing_it() {
    let gw = gateway_with(&[], |c| c.limits.admin_body_bytes = 1 << 20).await;
    let url = format!("http://{}.example:8935", "a".repeat(60_000));
    let ans = gw.admin_post("/admin/orchestrators", json!({"url": url})).await;
    let v = ans.error(400, "invalid-url");
    assert!(ans.body.len() < 1000, "the address is not echoed back: {} bytes", ans.body.len());
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("characters long")), "{v}");
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json(), json!([]));
}

#[actix_web::test]
async fn a_manual_trip_holds_until_reset_or_for_the_time_given() {
    let a = sim("a", &[("depth", healthy())]);
    // A breaker's own open time of 50 ms: a trip that only opened it would let jobs through
    // again almost at once.
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.breaker.base_open = Duration::from_millis(50);
        c.breaker.max_open = Duration::from_millis(100);
    })
    .await;
    assert_eq!(gw.job("depth", "warm").await.status, 200);
    let orch = gw.pair("depth", &a.url).await["orchestrator"].as_str().expect("id").to_string();
    let tripped = gw.admin_post(&format!("/admin/pairs/{orch}/depth/trip"), json!({})).await.json();
    assert_eq!(tripped["breaker"]["forced"], true, "{tripped}");
    assert_eq!(tripped["unroutable_reason"], "forced-open", "{tripped}");
    let until = tripped["breaker"]["open_until_unix_ms"].as_u64().expect("open_until");
    // Past the breaker's own open time, the pair is still out.
    eventually("the breaker's own open time to pass", 250, || async {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
        (now > until + 50).then_some(())
    })
    .await;
    let p = gw.pair("depth", &a.url).await;
    assert_eq!((p["breaker"]["state"].as_str(), p["routable"].as_bool()), (Some("open"), Some(false)), "{p}");
    let jobs_before = a.state.stats("depth").jobs;
    gw.job("depth", "while-forced").await.error(503, "no-routable-orchestrator");
    assert_eq!(a.state.stats("depth").jobs, jobs_before, "no job, no trial reaches a tripped pair");
    let reset = gw.admin_post(&format!("/admin/pairs/{orch}/depth/reset"), json!({})).await.json();
    assert_eq!((reset["breaker"]["forced"].as_bool(), reset["routable"].as_bool()), (Some(false), Some(true)));
    assert_eq!(gw.job("depth", "after-reset").await.status, 200);

    // With ?for= the trip ends on its own.
    let timed = gw.admin_post(&format!("/admin/pairs/{orch}/depth/trip?for=300ms"), json!({})).await.json();
    assert!(timed["breaker"]["forced_until_unix_ms"].as_u64().is_some(), "{timed}");
    eventually("the timed trip to end", 250, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["routable"] == true).then_some(())
    })
    .await;
    for bad in ["soon", "0s", "30d"] {
        gw.admin_post(&format!("/admin/pairs/{orch}/depth/trip?for={bad}"), json!({}))
            .await
            .error(400, "invalid-duration");
    }
}

#[actix_web::test]
async fn reasons_and_codes_say_what_happened() {
    let a = sim("a", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;

    // An orchestrator the gateway cannot reach is "unreachable", not "not offered".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let added = gw.admin_post("/admin/orchestrators", json!({"url": dead_url, "capabilities": ["depth"]})).await;
    assert_eq!(added.status, 201);
    let dead = eventually("the hot-added pair to probe", 250, || async {
        gw.find_pair("depth", &dead_url).await.filter(|p| p["unroutable_reason"] != "token-pending")
    })
    .await;
    assert_eq!(dead["unroutable_reason"], "unreachable", "{dead}");

    // One rule for failed jobs: an attempt was made and failed and nothing else can take the
    // job: 502 upstream-failed, saying why the others could not.
    let b_id = gw.pair("depth", &b.url).await["orchestrator"].as_str().expect("id").to_string();
    assert_eq!(gw.admin_patch(&format!("/admin/orchestrators/{b_id}"), json!({"enabled": false})).await.status, 200);
    let err = gw.job("depth", "fails").await.error(502, "upstream-failed");
    let message = err["error"]["message"].as_str().expect("message");
    assert!(message.contains("no other orchestrator can take the job now") && message.contains("disabled"), "{err}");

    // A body that is JSON but not a policy is an invalid policy.
    gw.admin_put("/admin/capabilities/depth", json!({"profile": "fast"})).await.error(400, "invalid-policy");
    // Deleting a policy that is not there says so plainly.
    let err = gw.admin_delete("/admin/capabilities/depth").await.error(404, "capability-not-found");
    assert_eq!(
        err["error"]["message"],
        "capability 'depth' has no runtime policy to delete (its policy comes from the config file or the defaults)"
    );
    // A POST-only route asked with GET: 405 naming the methods, as the public API answers.
    let orch = gw.pair("depth", &a.url).await["orchestrator"].as_str().expect("id").to_string();
    let wrong = gw.admin_get(&format!("/admin/pairs/{orch}/depth/trip")).await;
    wrong.error(405, "method-not-allowed");
    assert_eq!(wrong.header("allow").as_deref(), Some("POST"));
    gw.admin_get("/admin/nothing-here").await.error(404, "not-found");
}

#[actix_web::test]
async fn every_documented_metric_exists_before_the_first_event() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let rows: Vec<&str> = readme.lines().filter_map(|l| l.strip_prefix("| `byoc_gateway_")).collect();
    let documented: std::collections::BTreeSet<&str> = rows.iter().filter_map(|l| l.split('`').next()).collect();
    assert!(documented.len() >= 30, "the README's metrics table: {documented:?}");
    // A pair's latency exists once it has been measured: before, its family is declared.
    let after_a_success: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|l| l.contains("from the pair's first success"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert_eq!(after_a_success.len(), 1, "{after_a_success:?}");
    // The pair gauges follow the supervisor's first tick; nothing else has happened yet.
    let text = eventually("the first tick's gauges", 250, || async {
        let m = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
        let text = String::from_utf8_lossy(&m.body).into_owned();
        text.contains("byoc_gateway_pairs_routable").then_some(text)
    })
    .await;
    let missing: Vec<&&str> = documented
        .iter()
        .filter(|name| {
            let declared = after_a_success.contains(*name) && text.contains(&format!("# TYPE byoc_gateway_{name} "));
            !declared && !text.contains(&format!("\nbyoc_gateway_{name}"))
        })
        .collect();
    assert!(missing.is_empty(), "documented but absent before any job: {missing:?}");
    assert_eq!(a.state.stats("depth").jobs, 0, "no job was sent");
}

#[actix_web::test]
async fn refused_adds_leave_no_gap_in_orchestrator_ids() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    for _ in 0..3 {
        gw.admin_post("/admin/orchestrators", json!({"url": a.url})).await.error(409, "duplicate-orchestrator");
    }
    let added = gw.admin_post("/admin/orchestrators", json!({"url": b.url})).await;
    assert_eq!(added.status, 201);
    assert_eq!(added.json()["id"], "orch-2", "{:?}", added.body);
}
