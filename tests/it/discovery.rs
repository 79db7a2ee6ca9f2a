//! Orchestrator discovery through a webhook (`--orch-webhook-url`, go-livepeer's
//! `-orchWebhookUrl`): a real HTTP server in the test serves the list, which the test changes
//! at runtime; the gateway must follow it, leave other sources alone, and change nothing when
//! the webhook fails.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::support::*;
use byoc_gateway::config::Config;
use byoc_sim::SimHandle;

/// What the webhook answers.
#[derive(Clone)]
pub(crate) enum Reply {
    /// 200 with these addresses, go-livepeer's shape plus a field the gateway must tolerate.
    List(Vec<String>),
    /// 200 with this body as it stands.
    Body(String),
    /// This status with a text body.
    Status(u16),
}

pub(crate) struct Webhook {
    url: String,
    reply: Arc<Mutex<Reply>>,
    /// The `Authorization` header of the last fetch, if it had one.
    authorization: Arc<Mutex<Option<String>>>,
    pub(crate) server: ServerHandle,
}

impl Webhook {
    pub(crate) fn start(reply: Reply) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        let url = format!("http://{}/orchestrators?key=secret-query", listener.local_addr().expect("addr"));
        let reply = Arc::new(Mutex::new(reply));
        let authorization = Arc::new(Mutex::new(None));
        let shared = web::Data::new((reply.clone(), authorization.clone()));
        let server =
            HttpServer::new(move || App::new().app_data(shared.clone()).route("/orchestrators", web::get().to(serve)))
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Webhook { url, reply, authorization, server: handle }
    }

    pub(crate) fn set(&self, reply: Reply) {
        *self.reply.lock() = reply;
    }

    fn list(&self, sims: &[&SimHandle]) {
        self.set(Reply::List(sims.iter().map(|s| s.url.clone()).collect()));
    }
}

type Shared = (Arc<Mutex<Reply>>, Arc<Mutex<Option<String>>>);

async fn serve(req: actix_web::HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    *shared.1.lock() = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let reply = shared.0.lock().clone();
    match reply {
        Reply::List(urls) => HttpResponse::Ok()
            .json(urls.iter().map(|u| json!({"address": u, "score": 1.0, "region": "test"})).collect::<Vec<_>>()),
        Reply::Body(b) => HttpResponse::Ok().content_type("application/json").body(b),
        Reply::Status(s) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(s).expect("status")).body("webhook trouble")
        }
    }
}

pub(crate) fn with_webhook(hook: &Webhook) -> impl FnOnce(&mut Config) + '_ {
    move |c: &mut Config| {
        c.discovery.webhook_url = Some(hook.url.clone());
        c.discovery.webhook_refresh = Duration::from_millis(200);
        c.discovery.webhook_timeout = Duration::from_secs(2);
    }
}

/// The registry entry for `url`, if any.
async fn entry(gw: &TestGateway, url: &str) -> Option<Value> {
    let list = gw.admin_get("/admin/orchestrators").await.json();
    let found: Vec<Value> = list.as_array().expect("list").iter().filter(|o| o["url"] == url).cloned().collect();
    assert!(found.len() <= 1, "{url} registered twice: {list}");
    found.into_iter().next()
}

/// Waits until the webhook has been fetched with `outcome` after the fetch count `after`, and
/// returns the discovery report then.
async fn fetched(gw: &TestGateway, outcome: &str, after: u64) -> Value {
    eventually(&format!("a webhook fetch with outcome {outcome}"), 500, || async {
        let d = gw.admin_get("/admin/discovery").await.json();
        let n = d["fetches_ok"].as_u64().expect("ok") + d["fetches_failed"].as_u64().expect("failed");
        (n > after && d["last_fetch"]["outcome"] == outcome).then_some(d)
    })
    .await
}

fn fetches(d: &Value) -> u64 {
    d["fetches_ok"].as_u64().expect("ok") + d["fetches_failed"].as_u64().expect("failed")
}

#[actix_web::test]
async fn webhook_orchestrators_are_added_routed_to_then_drained_and_removed_when_delisted() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let hook = Webhook::start(Reply::List(vec![]));
    hook.list(&[&a]);
    let gw = gateway_with(&[], with_webhook(&hook)).await;

    let added = eventually("a discovered", 500, || entry(&gw, &a.url)).await;
    assert_eq!(added["source"], "webhook", "{added}");
    assert_eq!(added["capabilities"], json!([]), "webhook entries declare no capabilities");
    // Like an --orch-addr orchestrator: its capability is probed when a job first asks.
    let first = gw.job("depth", "first").await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    assert_eq!(first.json()["sim"], "a");
    assert_eq!(first.header("x-orchestrator-url").as_deref(), Some(a.url.as_str()));

    // A slow job is in flight on a when the webhook stops listing it.
    a.state.patch(Some("depth"), &json!({"latency_ms": 800})).expect("knob");
    let in_flight = gw.spawn_job("depth", "slow");
    eventually("the slow job reached a", 250, || async { (a.state.stats("depth").jobs == 2).then_some(()) }).await;
    hook.list(&[&b]);
    eventually("a removed", 500, || async { entry(&gw, &a.url).await.is_none().then_some(()) }).await;
    let b_entry = eventually("b discovered", 500, || entry(&gw, &b.url)).await;
    assert_eq!(b_entry["source"], "webhook");
    eventually("b routable", 250, || async {
        (gw.find_pair("depth", &b.url).await?["routable"] == true).then_some(())
    })
    .await;
    for i in 0..5 {
        assert_eq!(gw.job("depth", &format!("after{i}")).await.json()["sim"], "b");
    }
    assert!(gw.pairs("depth").await.iter().all(|p| p["orchestrator_url"] != a.url.as_str()), "a's pairs are gone");
    let slow = in_flight.await.expect("job task");
    assert_eq!(slow.status, 200, "the in-flight job finished although its orchestrator was delisted");
    assert_eq!(slow.json()["sim"], "a");

    let d = gw.admin_get("/admin/discovery").await.json();
    assert_eq!(d["enabled"], true);
    assert_eq!(d["orchestrators"], 1, "{d}");
    assert_eq!(d["last_fetch"]["outcome"], "ok", "{d}");
    assert_eq!(d["last_fetch"]["listed"], 1, "{d}");
    assert!(d["last_success_at_unix_ms"].as_u64().is_some(), "{d}");
    assert!(!d["webhook_url"].as_str().expect("url").contains("secret-query"), "the query is not shown: {d}");
    hook.server.stop(false).await;
}

#[actix_web::test]
async fn a_failing_webhook_changes_nothing_and_says_why() {
    let a = sim("a", &[("depth", healthy())]);
    let hook = Webhook::start(Reply::List(vec![]));
    hook.list(&[&a]);
    let gw = gateway_with(&[], with_webhook(&hook)).await;
    let id = eventually("a discovered", 500, || entry(&gw, &a.url)).await["id"].clone();
    let mut seen = fetches(&gw.admin_get("/admin/discovery").await.json());

    for (reply, outcome) in [
        (Reply::Status(500), "http-status"),
        (Reply::Body("{\"address\": \"not a list\"}".into()), "bad-json"),
        (Reply::Body("[{\"address\": \"ftp://nope:1\"}]".into()), "no-valid-entry"),
    ] {
        hook.set(reply);
        let d = fetched(&gw, outcome, seen).await;
        seen = fetches(&d);
        assert!(d["last_fetch"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{d}");
        assert!(d["fetches_failed"].as_u64() > Some(0), "{d}");
        let still = entry(&gw, &a.url).await.unwrap_or_else(|| panic!("a was removed after a {outcome} fetch"));
        assert_eq!(still["id"], id, "same entry, untouched");
        assert_eq!(gw.job("depth", outcome).await.json()["sim"], "a", "still routed after {outcome}");
    }

    // Invalid entries in an otherwise valid list are skipped; the rest applies.
    hook.set(Reply::Body(format!(
        "[{{\"address\": \"ftp://nope:1\"}}, {{\"score\": 1}}, {{\"address\": \"{}\"}}]",
        a.url
    )));
    let d = eventually("a fetch with two skipped entries", 500, || async {
        let d = gw.admin_get("/admin/discovery").await.json();
        (fetches(&d) > seen && d["last_fetch"]["skipped"].as_array().map(Vec::len) == Some(2)).then_some(d)
    })
    .await;
    assert_eq!(d["last_fetch"]["outcome"], "ok", "{d}");
    assert_eq!(d["last_fetch"]["listed"], 1, "{d}");
    assert!(entry(&gw, &a.url).await.is_some());

    // The webhook is gone altogether: a connect failure, still nothing removed.
    hook.server.stop(false).await;
    fetched(&gw, "connect", fetches(&d)).await;
    assert!(entry(&gw, &a.url).await.is_some(), "a survives the webhook going away");

    let metrics = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).into_owned();
    for outcome in ["ok", "http-status", "bad-json", "no-valid-entry", "connect"] {
        let needle = format!("byoc_gateway_discovery_fetches_total{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&needle), "missing {needle}");
    }
    assert!(metrics.contains("byoc_gateway_discovery_orchestrators"), "missing the webhook orchestrator gauge");
}

#[actix_web::test]
async fn orchestrators_from_the_file_or_the_admin_api_are_never_touched_by_the_webhook() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let c = sim("c", &[("depth", healthy())]);
    let hook = Webhook::start(Reply::List(vec![]));
    hook.list(&[&a, &b]);
    // a is in the config file with a declared capability; b only in the webhook.
    let gw = gateway_with(&[(&a, &["depth"])], with_webhook(&hook)).await;
    let added = gw.admin_post("/admin/orchestrators", json!({"url": c.url})).await;
    assert_eq!(added.status, 201);
    hook.list(&[&a, &b, &c]);

    eventually("b discovered", 500, || entry(&gw, &b.url)).await;
    let d = fetched(&gw, "ok", fetches(&gw.admin_get("/admin/discovery").await.json())).await;
    let mut elsewhere: Vec<String> =
        serde_json::from_value(d["last_fetch"]["registered_elsewhere"].clone()).expect("list");
    elsewhere.sort();
    let mut expected = vec![a.url.clone(), c.url.clone()];
    expected.sort();
    assert_eq!(elsewhere, expected, "{d}");
    let before_a = entry(&gw, &a.url).await.expect("a");
    assert_eq!(before_a["source"], "config");
    assert_eq!(before_a["capabilities"], json!(["depth"]));
    assert_eq!(entry(&gw, &c.url).await.expect("c")["source"], "admin");
    assert_eq!(gw.admin_get("/admin/orchestrators").await.json().as_array().map(Vec::len), Some(3), "no duplicates");

    // The webhook drops everything: only its own entry goes.
    hook.set(Reply::List(vec![]));
    eventually("b removed", 500, || async { entry(&gw, &b.url).await.is_none().then_some(()) }).await;
    assert_eq!(entry(&gw, &a.url).await.expect("a survives"), before_a, "a is unchanged");
    assert_eq!(entry(&gw, &c.url).await.expect("c survives")["source"], "admin");
    assert_eq!(gw.admin_get("/admin/discovery").await.json()["orchestrators"], 0);
    let served: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..6 {
            v.push(gw.job("depth", &format!("j{i}")).await.json()["sim"].as_str().expect("sim").to_string());
        }
        v
    };
    assert!(served.iter().all(|s| s == "a" || s == "c"), "{served:?}");
    hook.server.stop(false).await;
}

#[actix_web::test]
async fn webhook_orchestrators_survive_a_restart_with_the_webhook_down_and_go_when_discovery_is_off() {
    let a = sim("a", &[("depth", healthy())]);
    let hook = Webhook::start(Reply::List(vec![]));
    hook.list(&[&a]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let base = gateway_args(data, &[]);
    let c = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let get = |admin: String, path: &'static str| {
        let c = c.clone();
        async move { read(c.get(format!("{admin}{path}")).bearer_auth(TOKEN).send().await).await.json() }
    };
    let job = |http: String| {
        let c = c.clone();
        async move {
            let req =
                c.post(format!("{http}/process/request/depth")).insert_header(("Livepeer", job_header("depth", "j")));
            read(req.send_body("{}").await).await
        }
    };

    let mut args = base.to_vec();
    args.extend(["--orch-webhook-url", &hook.url]);
    let first = Process::spawn(&args);
    let listed = eventually("a discovered", 500, || async {
        let v = get(first.admin.clone(), "/admin/orchestrators").await;
        (v.as_array().map(Vec::len) == Some(1)).then_some(v)
    })
    .await;
    assert_eq!(listed[0]["source"], "webhook");
    assert_eq!(job(first.http.clone()).await.json()["sim"], "a");
    assert_eq!(first.signal_and_wait("TERM"), Some(0));

    // Restart while the webhook fails (configured through the environment this time): the
    // persisted entry still routes, and the failed fetch removed nothing.
    hook.set(Reply::Status(503));
    let second =
        Process::spawn_with(&base, &[("RUST_LOG", "warn"), ("BYOC_GATEWAY_ORCH_WEBHOOK_URL", &hook.url)], None);
    assert_eq!(get(second.admin.clone(), "/admin/orchestrators").await, listed, "same entry, same id");
    eventually("the failed fetch", 500, || async {
        let d = get(second.admin.clone(), "/admin/discovery").await;
        (d["last_fetch"]["outcome"] == "http-status").then_some(())
    })
    .await;
    assert_eq!(get(second.admin.clone(), "/admin/orchestrators").await, listed);
    assert_eq!(job(second.http.clone()).await.json()["sim"], "a");
    assert_eq!(second.signal_and_wait("TERM"), Some(0));

    // Without a webhook nothing would ever reconcile them: they are removed at start.
    let third = Process::spawn(&base);
    assert_eq!(get(third.admin.clone(), "/admin/orchestrators").await, json!([]));
    assert_eq!(get(third.admin.clone(), "/admin/discovery").await["enabled"], false);
    drop(third);
    hook.server.stop(false).await;
}

#[actix_web::test]
async fn probes_for_capability_names_nobody_offers_are_rate_limited() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let c = sim("c", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"]), (&b, &["depth"]), (&c, &["depth"])], |cfg| {
        cfg.routing.discovery_probes_per_sec = 1;
    })
    .await;
    let tokens = |s: &byoc_sim::SimHandle| s.state.stats("depth").tokens;
    let before: u64 = [&a, &b, &c].iter().map(|s| tokens(s)).sum();
    // The first unknown name is probed on all three orchestrators (3 probes, the burst).
    gw.job("random-1", "r1").await.error(404, "unknown-capability");
    // The next ones would cost 3 probes each: refused at once until the bucket refills.
    for i in 2..=4 {
        let ans = gw.job(&format!("random-{i}"), "r").await;
        let v = ans.error(503, "discovery-rate-limited");
        assert!(ans.header("retry-after").and_then(|r| r.parse::<u64>().ok()).is_some_and(|s| s >= 1), "{v}");
    }
    // The remembered miss stays a prompt 404, and known capabilities are untouched.
    gw.job("random-1", "again").await.error(404, "unknown-capability");
    assert_eq!(gw.job("depth", "known").await.status, 200);
    let after: u64 = [&a, &b, &c].iter().map(|s| tokens(s)).sum();
    assert_eq!(after, before, "the depth pairs' own probes are not part of this");
    let metrics = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).to_string();
    assert!(metrics.contains("byoc_gateway_discovery_rate_limited_total 3"), "counted");
}

#[actix_web::test]
async fn names_refused_once_the_discovery_budget_is_spent_become_no_metric_label_and_little_log() {
    // A gateway process of its own: its /metrics and its log hold only what these jobs did.
    let a = sim("a", &[("depth", healthy())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[[orchestrators]]\nurl = \"{}\"\ncapabilities = [\"depth\"]\n[routing]\ndiscovery_probes_per_sec = 1\n",
            a.url
        ),
    )
    .expect("write config");
    let log = dir.path().join("stderr.log");
    let data = dir.path().join("data");
    let args = gateway_args(data.to_str().expect("utf-8"), &["--config", config.to_str().expect("utf-8")]);
    let gw = Process::spawn_with(&args, &[("RUST_LOG", "warn")], Some(&log));
    gw.wait_probed().await;
    let c = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    const JOBS: usize = 300;
    let names: Vec<String> = (0..JOBS).map(|i| format!("zz-{i}-{:016x}", rand::random::<u64>())).collect();
    let mut codes = std::collections::BTreeMap::new();
    let started = std::time::Instant::now();
    for name in &names {
        let header = byoc_actors::protocol::header::encode_client_header(
            &json!({"capability": name, "request": "{}", "timeout_seconds": 5}),
        );
        let ans = read(
            c.post(format!("{}/process/request/x", gw.http)).insert_header(("Livepeer", header)).send_body("{}").await,
        )
        .await;
        *codes.entry(ans.json()["error"]["code"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    assert!(codes.get("discovery-rate-limited").is_some_and(|n| *n >= JOBS - 10), "{codes:?}");
    // Stream starts naming such capabilities are refused the same way, and label nothing either.
    for i in 0..20 {
        let header = byoc_actors::protocol::header::encode_client_header(
            &json!({"capability": format!("zz-stream-{i}"), "request": "{}", "parameters": "{}", "timeout_seconds": 5}),
        );
        let ans = read(
            c.post(format!("{}/process/stream/start", gw.http))
                .insert_header(("Livepeer", header))
                .insert_header(("Content-Type", "application/json"))
                .send_body("{}")
                .await,
        )
        .await;
        let code = ans.json()["error"]["code"].as_str().unwrap_or("?").to_string();
        assert!(["discovery-rate-limited", "unknown-capability"].contains(&code.as_str()), "{code}");
    }
    let metrics = read(c.get(format!("{}/metrics", gw.admin)).bearer_auth(TOKEN).send().await).await;
    let text = String::from_utf8_lossy(&metrics.body);
    let labelled: Vec<&str> = text.lines().filter(|l| l.contains("zz-")).take(3).collect();
    assert!(labelled.is_empty(), "a client's capability names became label values: {labelled:?}");
    let refused = text.lines().find_map(|l| {
        l.strip_prefix("byoc_gateway_requests_total{capability=\"unknown\",outcome=\"discovery-rate-limited\"} ")
    });
    assert_eq!(
        refused.and_then(|n| n.parse::<usize>().ok()),
        codes.get("discovery-rate-limited").copied(),
        "counted under unknown"
    );
    let stream_refusals: usize = text
        .lines()
        .filter(|l| l.starts_with("byoc_gateway_stream_starts_total{capability=\"unknown\","))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(stream_refusals, 20, "the refused stream starts are counted under unknown");
    // Each refusal is a warning, at most 10 a second (a bound from the time the jobs took,
    // not a timing assertion).
    let bound = 10 * (started.elapsed().as_secs() as usize + 2);
    drop(gw);
    let lines = std::fs::read_to_string(&log).expect("log");
    let logged = lines.lines().filter(|l| l.contains("job failed:")).count();
    assert!(logged <= bound, "{logged} 'job failed' lines for {JOBS} refused jobs (at most {bound})");
}

#[actix_web::test]
async fn an_unreachable_orchestrators_probes_back_off_and_it_comes_back_when_it_answers() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    a.stop().await;
    // A job finds it gone: the pair leaves rotation and probes, failing, backing off.
    let ans = gw.job("depth", "gone").await;
    assert_ne!(ans.status, 200);
    let pair = eventually("four failed probes in a row", 1000, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["token_failures"].as_u64() >= Some(4)).then_some(p)
    })
    .await;
    assert_eq!(pair["routable"], false, "{pair}");
    a.restart().expect("listen again");
    let pair = eventually("back after its next probe", 1500, || async {
        let p = gw.pair("depth", &a.url).await;
        (p["routable"] == true).then_some(p)
    })
    .await;
    assert_eq!(pair["token_failures"], 0, "{pair}");
    assert_eq!(gw.job("depth", "back").await.status, 200);
}

/// The pairs of `capability`, as the orchestrator URLs they belong to, sorted.
async fn pair_urls(gw: &TestGateway, capability: &str) -> Vec<String> {
    let mut urls: Vec<String> =
        gw.pairs(capability).await.iter().filter_map(|p| p["orchestrator_url"].as_str().map(str::to_string)).collect();
    urls.sort();
    urls
}

fn sorted(urls: &[&SimHandle]) -> Vec<String> {
    let mut v: Vec<String> = urls.iter().map(|s| s.url.clone()).collect();
    v.sort();
    v
}

#[actix_web::test]
async fn pairs_exist_for_what_orchestrators_offer_not_for_every_capability() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("upscale", healthy())]);
    let c = sim("c", &[("depth", healthy()), ("upscale", healthy())]);
    let d = sim("d", &[("other", healthy())]);
    // Only a declares anything: the survey finds c offers depth too.
    let gw = gateway(&[(&a, &["depth"]), (&b, &[]), (&c, &[]), (&d, &[])]).await;
    let survey_done = || async {
        let s = gw.admin_get("/admin/supervisor").await.json();
        (s["survey"]["in_flight"] == 0 && s["survey"]["queued_walks"] == 0).then_some(s)
    };
    eventually("the start-up survey", 500, survey_done).await;
    assert_eq!(pair_urls(&gw, "depth").await, sorted(&[&a, &c]));
    // A job names upscale: every orchestrator is asked once, the two that offer it keep a pair.
    assert_eq!(gw.job("upscale", "u").await.status, 200);
    eventually("upscale settled", 500, survey_done).await;
    assert_eq!(pair_urls(&gw, "upscale").await, sorted(&[&b, &c]));
    let s = gw.admin_get("/admin/supervisor").await.json();
    assert_eq!(s["pair_actors"], 4, "pairs for the 4 offers, not 4 orchestrators x 2 capabilities: {s}");
    assert_eq!(d.state.stats("depth").jobs + d.state.stats("upscale").jobs, 0);

    // A hot-added orchestrator declaring nothing is asked about every capability at once and
    // gets pairs for what it offers, which then take jobs.
    let e = sim("e", &[("upscale", healthy())]);
    let added = gw.admin_post("/admin/orchestrators", json!({"url": e.url, "capabilities": []})).await;
    assert_eq!(added.status, 201);
    eventually("e's upscale pair routable", 500, || async {
        (gw.find_pair("upscale", &e.url).await?["routable"] == true).then_some(())
    })
    .await;
    assert!(gw.find_pair("depth", &e.url).await.is_none(), "e does not offer depth");
    let s = eventually("e surveyed", 500, survey_done).await;
    assert!(s["survey"]["found"].as_u64() >= Some(2), "c/depth and e/upscale were found by surveys: {s}");
    let metrics = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).to_string();
    assert!(metrics.contains("byoc_gateway_survey_probes_total"), "survey probes are counted");
}

#[actix_web::test]
async fn configured_headers_are_sent_with_each_fetch_and_never_shown() {
    let a = sim("a", &[("depth", healthy())]);
    let hook = Webhook::start(Reply::List(vec![a.url.clone()]));
    let gw = gateway_with(&[], |c| {
        with_webhook(&hook)(c);
        c.discovery.webhook_headers.insert("Authorization".into(), "Bearer s3cret-registry-token".into());
    })
    .await;
    let d = fetched(&gw, "ok", 0).await;
    assert_eq!(hook.authorization.lock().as_deref(), Some("Bearer s3cret-registry-token"));
    assert_eq!(d["header_names"], json!(["authorization"]), "{d}");
    assert!(!d.to_string().contains("s3cret"), "the value is never shown: {d}");
    assert!(entry(&gw, &a.url).await.is_some(), "the listed orchestrator is registered");
    let everything = [
        gw.admin_get("/admin/supervisor").await.body,
        gw.admin_get("/admin/orchestrators").await.body,
        read(gw.client.get(format!("{}/metrics", gw.admin)).bearer_auth(TOKEN).send().await).await.body,
    ];
    for body in everything {
        assert!(!String::from_utf8_lossy(&body).contains("s3cret"), "never shown");
    }
}

#[actix_web::test]
async fn the_webhook_names_its_orchestrators_and_renames_only_its_own() {
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let hook = Webhook::start(Reply::List(vec![]));
    let gw = gateway_with(&[(&b, &["depth"])], with_webhook(&hook)).await;
    let listing = |a_label: &str| {
        Reply::Body(
            json!([{"address": a.url, "label": a_label}, {"address": b.url, "label": "not-the-webhooks"}]).to_string(),
        )
    };
    hook.set(listing("gpu-a"));
    let added = eventually("a discovered with its label", 500, || async {
        entry(&gw, &a.url).await.filter(|o| o["label"] == "gpu-a")
    })
    .await;
    assert_eq!(added["source"], "webhook");
    assert_eq!(gw.job("depth", "j").await.status, 200);
    let pair = eventually("a's depth pair", 250, || gw.find_pair("depth", &a.url)).await;
    assert_eq!(pair["orchestrator_label"], "gpu-a");

    hook.set(listing("gpu-a-renamed"));
    eventually("a renamed", 500, || async {
        let pair = gw.find_pair("depth", &a.url).await?;
        (pair["orchestrator_label"] == "gpu-a-renamed").then_some(())
    })
    .await;
    assert_eq!(entry(&gw, &a.url).await.expect("a")["label"], "gpu-a-renamed");
    // b comes from the config: the webhook listing it with a label changes nothing.
    let b_entry = entry(&gw, &b.url).await.expect("b");
    assert_eq!((b_entry["source"].clone(), b_entry["label"].clone()), (json!("config"), Value::Null));
    hook.server.stop(false).await;
}
