//! Issue 22's low-severity findings, each reproduced through real HTTP with the real simulator:
//! informational answers, framing of the status page, blank-line floods, a pair that answers
//! 4xx to everything, path tricks, admin input, warm-up paths, and which timeout fired.

use std::time::{Duration, Instant};

use byoc_actors::protocol::header::encode_client_header;
use byoc_sim::Knobs;
use futures_util::StreamExt as _;
use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn an_informational_redirect_or_out_of_range_status_is_a_502_never_relayed() {
    for status in [103u16, 101, 302, 600] {
        let bad = sim("bad", &[("depth", Knobs { status: Some(status), status_body: "odd".into(), ..healthy() })]);
        let gw = gateway(&[(&bad, &["depth"])]).await;
        let ans = gw.job("depth", "one").await;
        let v = ans.error(502, "upstream-failed");
        let attempt = &v["error"]["attempts"][0];
        assert_eq!(attempt["status"], status, "{v}");
        assert_eq!(attempt["result"], "bad-status", "{v}");
        // Held against the pair as a broken answer, not counted as a success.
        let pair = gw.pair("depth", &bad.url).await;
        assert_eq!(pair["counters"]["success"], 0, "{status}: {pair}");
        assert_eq!(pair["counters"]["bad_status"], 1, "{status}: {pair}");
        assert_eq!(pair["breaker"]["consecutive_failures"], 1, "{status}: {pair}");
    }
    // With another orchestrator, the job fails over to it.
    let bad = sim("bad", &[("depth", Knobs { status: Some(103), ..healthy() })]);
    let good = sim("good", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&bad, &["depth"]), (&good, &["depth"])]).await;
    for i in 0..6 {
        let ans = gw.job("depth", &format!("j{i}")).await;
        assert_eq!(ans.status, 200, "{:?}", ans.body);
        assert_eq!(ans.json()["sim"], "good");
    }
}

#[actix_web::test]
async fn the_status_page_may_not_be_framed() {
    let gw = gateway(&[]).await;
    let ans = read(gw.client.get(format!("{}/admin/ui", gw.admin)).send().await).await;
    assert_eq!(ans.status, 200);
    let csp = ans.header("content-security-policy").expect("a CSP");
    assert!(csp.split(';').any(|d| d.trim() == "frame-ancestors 'none'"), "{csp}");
    assert_eq!(ans.header("x-frame-options").as_deref(), Some("DENY"));
}

/// Posts an event-stream job and reads the whole stream (bounded, so a stream that never ends
/// fails the test rather than hanging it).
async fn read_stream(gw: &TestGateway, capability: &str, timeout_seconds: u64) -> String {
    let header = encode_client_header(
        &json!({"id": "s", "capability": capability, "request": "{}", "timeout_seconds": timeout_seconds}),
    );
    let mut resp = gw
        .client
        .post(format!("{}/process/request/{capability}", gw.http))
        .insert_header(("Livepeer", header))
        .send_body("{}")
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    let read_all = async {
        while let Some(chunk) = resp.next().await {
            body.extend_from_slice(&chunk.expect("chunk"));
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read_all).await.expect("the stream ends");
    String::from_utf8_lossy(&body).into_owned()
}

#[actix_web::test]
async fn a_stream_that_turns_into_a_blank_line_flood_is_ended_by_the_gateway() {
    // The orchestrator sends one event, then only blank lines, as fast as the connection takes
    // them, until the job's timeout (go-livepeer's orchestrator when its worker's stream ends
    // without [DONE]).
    let a = sim("a", &[("chat", Knobs { sse_events: 1, sse_flood: true, ..healthy() })]);
    let gw = gateway(&[(&a, &["chat"])]).await;
    let text = read_stream(&gw, "chat", 30).await;
    assert!(text.starts_with("data: {") && text.contains("\"n\":0"), "the event is relayed: {text:?}");
    assert!(!text.contains("\n\n\n"), "blank runs are not relayed: {text:?}");
    assert!(
        text.ends_with(
            ": byoc-gateway: stream ended: the orchestrator sent only blank lines (65536 bytes in a row)\n\n"
        ),
        "the gateway ends the stream and says why: {text:?}"
    );
    // The upstream connection was dropped: the orchestrator's job (and its slot) ends.
    eventually("the orchestrator's job to end", 250, || async { (a.state.inflight("chat") == 0).then_some(()) }).await;
    let pair = gw.pair("chat", &a.url).await;
    assert_eq!(pair["inflight"], 0, "{pair}");
}

#[actix_web::test]
async fn a_pair_that_answers_4xx_to_everything_is_deprioritised_but_its_answers_are_still_relayed() {
    // `good` has two slots; `bad` answers 422 at once to every job and always has room, so
    // today it takes every job `good` has no room for.
    let good = sim("good", &[("depth", Knobs { latency_ms: 20, capacity: 2, ..Knobs::default() })]);
    let bad = sim(
        "bad",
        &[(
            "depth",
            Knobs { status: Some(422), status_body: "prompt is too long".into(), capacity: 8, ..Knobs::default() },
        )],
    );
    let gw = gateway(&[(&good, &["depth"]), (&bad, &["depth"])]).await;

    // Four clients at once, each sending its jobs one after another.
    let burst = |n: usize, tag: &'static str| {
        let gw = &gw;
        async move {
            let clients = (0..4).map(|c| async move {
                let mut bad_answers = 0;
                for i in 0..n {
                    let ans = gw.job("depth", &format!("{tag}-{c}-{i}")).await;
                    match ans.status {
                        200 => {}
                        422 => {
                            // Relayed as is (and, being the client's fault, not retried).
                            assert_eq!(&ans.body[..], b"prompt is too long\n");
                            bad_answers += 1;
                        }
                        s => panic!("job {tag}-{c}-{i}: {s} {:?}", ans.body),
                    }
                }
                bad_answers
            });
            futures_util::future::join_all(clients).await.into_iter().sum::<usize>()
        }
    };

    // Until the gateway notices: `bad` stands out against its sibling.
    let mut noticed = None;
    for round in 0..40 {
        burst(5, "warm").await;
        let pair = gw.pair("depth", &bad.url).await;
        if pair["client_errors"]["deprioritized"] == true {
            noticed = Some(pair);
            break;
        }
        assert!(round < 39, "the pair answering 422 to everything was never deprioritised: {pair}");
    }
    let pair = noticed.expect("noticed");
    assert!(pair["client_errors"]["share"].as_f64().is_some_and(|s| s > 0.9), "{pair}");
    let sibling = gw.pair("depth", &good.url).await;
    assert_eq!(sibling["client_errors"]["deprioritized"], false, "{sibling}");
    assert_eq!(sibling["client_errors"]["share"], 0.0, "{sibling}");

    // From now on `bad` gets only its exploration turns (one job per 5 s, so the gateway sees
    // when it recovers); jobs wait for `good`'s slots instead.
    let before = bad.state.stats("depth").jobs;
    let t0 = Instant::now();
    let relayed_422 = burst(10, "after").await;
    let turns = t0.elapsed().as_secs() / 5 + 2;
    let got = bad.state.stats("depth").jobs - before;
    assert_eq!(got as usize, relayed_422);
    assert!(got <= turns, "{got} of 40 jobs went to the pair answering 422 (at most {turns} exploration turns)");
}

#[actix_web::test]
async fn dot_segments_hidden_by_parameters_double_encoding_or_overlong_utf8_are_400s() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    let header = job_header("depth", "dots");
    let post = |path: &'static str| {
        let req = gw.client.post(format!("{}{path}", gw.http)).insert_header(("Livepeer", header.clone()));
        async move { read(req.send_body("{}").await).await }
    };
    for path in [
        "/process/request/depth/..;/_control",
        "/process/request/depth/..;jsessionid=1/_control",
        "/process/request/depth/.;/x",
        "/process/request/depth/%2e%2e;x/_control",
        "/process/request/depth/%252e%252e/_control",
        "/process/request/depth/%252E%252E%252F_control",
        "/process/request/depth/%25252e%25252e/_control",
        "/process/request/depth/%c0%ae%c0%ae/_control",
        "/process/request/depth/%e0%80%ae%e0%80%ae/_control",
        "/process/request/depth/%f0%80%80%ae./_control",
        "/process/request/depth/a%c0%afb",
        "/process/request/depth/%u002e%u002e/_control",
        "/process/request/depth/a%2",
    ] {
        let ans = post(path).await;
        let v = ans.error(400, "invalid-path");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("nothing was sent")), "{path}: {v}");
    }
    assert_eq!(a.state.stats("depth").jobs, 0, "nothing was sent upstream");
    // Semicolons, dots and encoded characters inside ordinary names are ordinary paths.
    for (path, forwarded) in [
        ("/process/request/depth/v1..2/a.b", "depth/v1..2/a.b"),
        ("/process/request/depth/a;b/c", "depth/a;b/c"),
        ("/process/request/depth/caf%C3%A9", "depth/café"),
        ("/process/request/depth/50%25", "depth/50%"),
    ] {
        let ans = post(path).await;
        assert_eq!(ans.status, 200, "{path}: {}", String::from_utf8_lossy(&ans.body));
        assert_eq!(ans.json()["path"], forwarded);
    }
}

#[actix_web::test]
async fn a_warmup_path_that_escapes_the_worker_path_is_refused() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    for path in ["depth/%2e%2e/_control", "%2E%2E", "depth/%252e%252e", "depth/..;/x", "depth/%c0%ae%c0%ae", "/../x"] {
        let ans = gw.admin_put("/admin/capabilities/depth", json!({"warmup": {"path": path}})).await;
        let v = ans.error(400, "invalid-policy");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("warmup.path")), "{path}: {v}");
    }
    // The policy did not change: no warm-up job was configured.
    let cap = gw.admin_get("/admin/capabilities/depth").await.json();
    assert!(cap["policy"]["warmup"].is_null(), "{cap}");
    // The same rule at start-up.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("g.toml");
    std::fs::write(&file, "[capabilities.depth.warmup]\npath = \"depth/%2e%2e/_control\"\n").expect("write");
    let out = std::process::Command::new(binary())
        .args(["check-config", "--config", file.to_str().expect("path")])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("warmup.path"), "{err}");
}

#[actix_web::test]
async fn the_admin_api_refuses_odd_hosts_port_0_and_capability_floods() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[]).await;
    for url in [
        "http://a\"b:8935",
        "http://a'b:8935",
        "http://a`b:8935",
        "http://a{b}:8935",
        "http://a$b:8935",
        "a\"b:8935",
        "http://127.0.0.1:0",
        "127.0.0.1:0",
        "http://[::1]:0",
    ] {
        let ans = gw.admin_post("/admin/orchestrators", json!({"url": url})).await;
        let v = ans.error(400, "invalid-url");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("host") || m.contains("port")), "{url}: {v}");
    }
    let many: Vec<String> = (0..6000).map(|i| format!("cap-{i}")).collect();
    let ans = gw.admin_post("/admin/orchestrators", json!({"url": a.url, "capabilities": many})).await;
    let v = ans.error(400, "too-many-capabilities");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("6000") && m.contains("256")), "{v}");
    // Nothing was registered.
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json(), json!([]));
    assert_eq!(gw.admin_get("/admin/pairs").await.json(), json!([]));
    // Ordinary names still work: host names with digits, hyphens and underscores, IP literals.
    for url in ["http://orch-1.example_net.local:8935", "http://[::1]:8935", a.url.as_str()] {
        let ans = gw.admin_post("/admin/orchestrators", json!({"url": url, "capabilities": ["depth"]})).await;
        assert_eq!(ans.status, 201, "{url}: {}", String::from_utf8_lossy(&ans.body));
    }
}

#[actix_web::test]
async fn a_timed_out_attempt_names_the_timeout_that_fired() {
    // Two warm pairs (300 ms a job, so neither is cut as stuck before its per-try time).
    let knobs = Knobs { latency_ms: 300, ..Knobs::default() };
    let a = sim("a", &[("depth", knobs.clone())]);
    let b = sim("b", &[("depth", knobs)]);
    let gw = gateway_with(&[(&a, &["depth"]), (&b, &["depth"])], |c| {
        let policy = json!({"per_try_timeout": "1s", "retry_timeout": "3s", "max_attempts": 3});
        c.capabilities.insert("depth".into(), serde_json::from_value(policy).expect("policy"));
    })
    .await;
    for i in 0..20 {
        assert_eq!(gw.job("depth", &format!("warm{i}")).await.status, 200);
        let pairs = gw.pairs("depth").await;
        if i >= 1 && pairs.iter().all(|p| p["latency_p50_ms"].is_number()) {
            break;
        }
        assert!(i < 19, "both pairs measured: {pairs:?}");
    }
    for s in [&a, &b] {
        s.state.set("depth", Knobs { stall: true, ..Knobs::default() });
    }
    // The first attempt is cut at the per-try timeout (another pair could take the job); the
    // second, the last candidate, gets the rest of the job's own time: timeout_seconds 2 + 5 s,
    // past the retry timeout (which did not fire: no attempt was left to start).
    let header =
        encode_client_header(&json!({"id": "t", "capability": "depth", "request": "{}", "timeout_seconds": 2}));
    let req = gw.client.post(format!("{}/process/request/depth", gw.http)).insert_header(("Livepeer", header));
    let ans = read(req.send_body("{}").await).await;
    let v = ans.error(504, "job-timeout");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(message.contains("timeout_seconds") && !message.contains("retry timeout"), "{v}");
    let attempts = v["error"]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{v}");
    assert_eq!(attempts[0]["result"], "timeout", "{v}");
    assert_eq!(attempts[0]["timeout"], "per-try", "{v}");
    assert!(attempts[0]["detail"].as_str().is_some_and(|d| d.contains("per_try_timeout")), "{v}");
    assert_eq!(attempts[1]["result"], "timeout", "{v}");
    assert_eq!(attempts[1]["timeout"], "job", "{v}");
    assert!(attempts[1]["detail"].as_str().is_some_and(|d| d.contains("timeout_seconds")), "{v}");
}
