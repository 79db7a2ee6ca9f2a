//! The live status page in a real headless browser (Debian's chromium driven through
//! chromedriver's WebDriver HTTP API): it loads with the token, lists the pairs of a running
//! gateway, and its trip button opens a pair's breaker; it lists live streams, and a stream's
//! stop button ends it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use byoc_sim::RunnerSpec;
use serde_json::{json, Value};

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    url: String,
    client: awc::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let req = self.client.request(method.parse().expect("method"), format!("{}{path}", self.url));
        let ans = match body {
            Some(b) => read(req.send_json(&b).await).await,
            None => read(req.send().await).await,
        };
        let v = ans.json();
        assert!(ans.status < 400, "webdriver {method} {path}: {v}");
        v["value"].clone()
    }
}

/// Whether the browser is installed; with `BYOC_TEST_REQUIRE=browser` (as `.ci/run` sets) its absence is a
/// failure, elsewhere the test says why it cannot run (`.ci/run` installs chromium and chromium-driver).
fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        let msg = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; .ci/run does it)";
        skip(Needs::Browser, "status page browser test", msg);
    }
    present
}

/// A headless chromium session driven through chromedriver (both ended on drop).
struct Page {
    driver: Driver,
    sid: String,
    _profile: tempfile::TempDir,
}

impl Page {
    async fn open() -> Page {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), client: awc::Client::default() };
        eventually("chromedriver ready", 500, || async {
            let r = driver.client.get(format!("{}/status", driver.url)).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let session = driver
            .call(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                             "--no-first-run", "--window-size=1280,800", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             format!("--user-data-dir={}", profile.path().display())]
                }}}})),
            )
            .await;
        let sid = session["sessionId"].as_str().expect("session id").to_string();
        Page { driver, sid, _profile: profile }
    }

    /// Runs `script` in the page; its value.
    async fn js(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.sid);
        self.driver.call("POST", &path, Some(json!({"script": script, "args": []}))).await
    }

    /// A real click on the element `selector` names.
    async fn click(&self, selector: &str) {
        let found = self
            .driver
            .call(
                "POST",
                &format!("/session/{}/element", self.sid),
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        let eid = found[ELEMENT].as_str().unwrap_or_else(|| panic!("element id in {found}")).to_string();
        self.driver.call("POST", &format!("/session/{}/element/{eid}/click", self.sid), Some(json!({}))).await;
    }
}

#[actix_web::test]
async fn the_status_page_lists_pairs_and_its_trip_button_opens_a_breaker() {
    if !browser_available() {
        return;
    }
    let a = sim("a", &[("depth", healthy()), ("upscale", healthy())]);
    let b = sim("b", &[("image-to-image", healthy())]);
    let gw = gateway_with(&[(&a, &["depth", "upscale"]), (&b, &["image-to-image"])], |c| {
        c.orchestrators[0].label = Some("gpu Frankfurt".into());
        // Plots from a sample every 200 ms (10 s in production) over 20 s.
        c.history.period = Duration::from_millis(200);
        c.history.window = Duration::from_secs(20);
    })
    .await;
    assert_eq!(gw.job("depth", "j").await.status, 200);
    // Jobs until the history holds two samples in a row in which the depth pair answered:
    // enough for a latency line on the page.
    let orch_id = gw.pair("depth", &a.url).await["orchestrator"].as_str().expect("id").to_string();
    let mut answered_twice = false;
    for i in 0..300 {
        assert_eq!(gw.job("depth", &format!("plot{i}")).await.status, 200);
        let h = gw.admin_get("/admin/history").await.json();
        let pair = h["pairs"].as_array().and_then(|ps| {
            ps.iter().find(|p| p["orchestrator"] == orch_id.as_str() && p["capability"] == "depth").cloned()
        });
        let lat = pair.map(|p| p["latency_p50_ms"].as_array().cloned().unwrap_or_default()).unwrap_or_default();
        if lat.windows(2).any(|w| w[0].is_number() && w[1].is_number()) {
            answered_twice = true;
            break;
        }
    }
    assert!(answered_twice, "the history never held two samples in a row with answers");
    let orch = gw.pair("depth", &a.url).await["orchestrator"].as_str().expect("id").to_string();

    let page = Page::open().await;
    let (driver, sid) = (&page.driver, page.sid.clone());
    let s = |p: &str| format!("/session/{sid}{p}");

    driver.call("POST", &s("/url"), Some(json!({"url": format!("{}/admin/ui#token={TOKEN}", gw.admin)}))).await;
    let key = format!("{orch}/depth");
    let state_of = |key: String| {
        let script = "const r = document.querySelector(`tr[data-pair=\"${arguments[0]}\"] .state`); return r ? r.textContent : null;";
        let driver = &driver;
        let path = s("/execute/sync");
        async move { driver.call("POST", &path, Some(json!({"script": script, "args": [key]}))).await }
    };
    eventually("the page lists the depth pair as closed", 250, || async {
        (state_of(key.clone()).await == "closed").then_some(())
    })
    .await;
    let rows = driver
        .call(
            "POST",
            &s("/execute/sync"),
            Some(json!({"script": "return document.querySelectorAll('tr[data-pair]').length", "args": []})),
        )
        .await;
    assert_eq!(rows, 3, "every pair of the running gateway is listed");
    // The capability table shows the slots: no job in flight, the token's 4 slots.
    let slots = driver
        .call(
            "POST",
            &s("/execute/sync"),
            Some(json!({"script": "const r = document.querySelector('tr[data-capability=\"depth\"] .slots'); return r ? r.textContent : null;", "args": []})),
        )
        .await;
    assert_eq!(slots, "0 / 4", "in flight / slots of the depth capability");
    // What an operator scans for: the orchestrator up at a glance, the version and uptime.
    let js = |script: &str| {
        let (driver, path, script) = (&driver, s("/execute/sync"), script.to_string());
        async move { driver.call("POST", &path, Some(json!({"script": script, "args": []}))).await }
    };
    let up = js(&format!(
        "const r = document.querySelector('tr[data-orchestrator=\"{orch}\"] .dot'); return r ? r.title : null;"
    ))
    .await;
    assert_eq!(up, "up", "the orchestrator shows up");
    let version = js("return document.querySelector('#version').textContent").await;
    assert!(version.as_str().is_some_and(|v| v.starts_with('v') && v.contains("up ")), "{version}");
    // The operator's label is shown beside the id, for the orchestrator and for its pairs.
    let name = js(&format!(
        "const r = document.querySelector('tr[data-orchestrator=\"{orch}\"] .name .label'); return r ? r.textContent : null;"
    ))
    .await;
    assert_eq!(name, "gpu Frankfurt");
    let pair_name = js(&format!(
        "const r = document.querySelector('tr[data-pair=\"{orch}/upscale\"] .name'); return r ? r.textContent : null;"
    ))
    .await;
    assert_eq!(pair_name, format!("gpu Frankfurt {orch}"));
    // Filtering: only the matching pairs (and orchestrators) stay visible.
    let filter = |text: &str| {
        js(&format!("const f = document.querySelector('#filter'); f.value = '{text}'; f.dispatchEvent(new Event('input')); return 0;"))
    };
    let visible = |table: &str| {
        js(&format!("return [...document.querySelectorAll('#{table} tbody tr')].filter((tr) => !tr.hidden).length"))
    };
    filter("upscale").await;
    assert_eq!(visible("pairs").await, 1, "the filter leaves the upscale pair");
    filter("frankfurt").await;
    assert_eq!(visible("pairs").await, 2, "a label finds its orchestrator's pairs");
    assert_eq!(visible("orchestrators").await, 1, "and the orchestrator");
    filter("").await;
    assert_eq!(visible("pairs").await, 3);
    // The plots: a latency line for the depth pair and a throughput line for its capability,
    // drawn from the history in inline SVG.
    let points = |selector: String| {
        js(&format!("const r = document.querySelector('{selector}'); return r ? r.getAttribute('points').trim().split(/\\s+/).length : 0;"))
    };
    let latency = format!("tr[data-pair=\"{orch}/depth\"] svg.spark.latency polyline");
    let n = eventually("a latency line on the page", 250, || async {
        let n = points(latency.clone()).await.as_u64().unwrap_or(0);
        (n >= 2).then_some(n)
    })
    .await;
    assert!(n >= 2);
    let throughput = "tr[data-capability=\"depth\"] svg.spark.throughput polyline.ok".to_string();
    assert!(points(throughput).await.as_u64().unwrap_or(0) >= 2, "the depth capability's throughput line");
    let header = js("return document.querySelector('#pairs th .window').textContent").await;
    assert_eq!(header, "last 20 s", "the plots' window is named");
    let external = js("return [...document.querySelectorAll('[src],[href],link,img,iframe')].length").await;
    assert_eq!(external, 0, "the page loads nothing: it works offline");

    let url_now = driver.call("GET", &s("/url"), None).await;
    assert!(!url_now.as_str().unwrap_or("").contains(TOKEN), "the token is removed from the address bar");

    // A real click on the trip button of that row.
    let button = driver
        .call(
            "POST",
            &s("/element"),
            Some(json!({"using": "css selector", "value": format!("tr[data-pair=\"{key}\"] button.trip")})),
        )
        .await;
    let eid = button[ELEMENT].as_str().unwrap_or_else(|| panic!("element id in {button}")).to_string();
    driver.call("POST", &s(&format!("/element/{eid}/click")), Some(json!({}))).await;
    eventually("the page shows the breaker open", 250, || async {
        (state_of(key.clone()).await == "open").then_some(())
    })
    .await;
    let forced = js(&format!(
        "const r = document.querySelector('tr[data-pair=\"{key}\"] .forced'); return r ? r.textContent : null;"
    ))
    .await;
    assert_eq!(forced, "forced", "a manual trip is shown as forced");
    assert_eq!(gw.pair("depth", &a.url).await["breaker"]["state"], "open", "the click reached the gateway");
    assert_eq!(gw.pair("upscale", &a.url).await["breaker"]["state"], "closed");

    // A live stream is listed with its state and orchestrator, and its stop button ends it.
    let start = gw
        .client
        .post(format!("{}/process/stream/start", gw.http))
        .insert_header((
            "Livepeer",
            byoc_actors::protocol::header::encode_client_header(
                &json!({"capability": "upscale", "timeout_seconds": 10, "parameters": "{\"enable_data_output\":true}"}),
            ),
        ))
        .send_body(json!({"stream_id": "ui1"}).to_string())
        .await;
    assert_eq!(read(start).await.status, 200);
    let stream_state = || {
        js("const r = document.querySelector('tr[data-stream=\"ui1\"] .stream-state'); return r ? r.textContent : null;")
    };
    eventually("the page lists the stream running", 250, || async {
        (stream_state().await == "running").then_some(())
    })
    .await;
    let on = js("const r = document.querySelector('tr[data-stream=\"ui1\"] .stream-orchestrator .label'); return r ? r.textContent : null;").await;
    assert_eq!(on, "gpu Frankfurt", "a stream's orchestrator shows with its label");
    let stop = driver
        .call(
            "POST",
            &s("/element"),
            Some(json!({"using": "css selector", "value": "tr[data-stream=\"ui1\"] button.stop-stream"})),
        )
        .await;
    let eid = stop[ELEMENT].as_str().unwrap_or_else(|| panic!("element id in {stop}")).to_string();
    driver.call("POST", &s(&format!("/element/{eid}/click")), Some(json!({}))).await;
    eventually("the page shows the stream ended", 250, || async {
        stream_state().await.as_str().is_some_and(|t| t.starts_with("ended")).then_some(())
    })
    .await;
    assert_eq!(gw.admin_get("/admin/streams/ui1").await.json()["ended"]["reason"]["kind"], "stopped-by-operator");

    if let Some(dir) = std::env::var_os("BYOC_SCREENSHOT_DIR") {
        use base64::Engine as _;
        let png = driver.call("GET", &s("/screenshot"), None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or("")).expect("png");
        std::fs::write(Path::new(&dir).join("status-page.png"), bytes).expect("write screenshot");
    }
    driver.call("DELETE", &format!("/session/{sid}"), None).await;
}

/// Live Runner on the status page: each runner with what discovery lists of it (app, GPU,
/// version, capacity, price, discovery standing and age), each session the gateway holds, and
/// their buttons: a session's stop releases it at its runner, a runner's trip opens its breaker
/// (through `/admin/runners`, its app name holding a `/`).
#[actix_web::test]
async fn the_status_page_shows_live_runner_runners_and_sessions_and_their_buttons_work() {
    if !browser_available() {
        return;
    }
    let spec = RunnerSpec {
        price: Some(7),
        version: "1.4.0".into(),
        ..RunnerSpec::persistent("scope-1", "live-video-to-video/scope", 2)
    };
    let s = crate::liverunner::live_sim("lr", &[spec]);
    let gw = crate::liverunner::live_gateway(&[&s], |_| {}).await;
    let id = gw.orchestrator_id(&s.url).await;
    let runner = format!("{id}:scope-1");
    gw.runner(&runner).await;

    let page = Page::open().await;
    let url = json!({"url": format!("{}/admin/ui#token={TOKEN}", gw.admin)});
    page.driver.call("POST", &format!("/session/{}/url", page.sid), Some(url)).await;
    let cell = |cls: &str| {
        format!(
            "const r = document.querySelector('tr[data-runner=\"{runner}\"] .{cls}'); return r ? r.textContent : null;"
        )
    };
    eventually("the page lists the runner", 250, || async {
        (page.js(&cell("app")).await == "live-video-to-video/scope").then_some(())
    })
    .await;
    assert_eq!(page.js(&cell("gpu")).await, "NVIDIA L40S · 45 GiB", "its name and memory");
    assert_eq!(page.js(&cell("capacity")).await, "0 / 2 / 2", "used / available / all");
    assert_eq!(page.js(&cell("price")).await, "7 wei / seconds");
    assert_eq!(page.js(&cell("standing")).await, "fresh");
    let heading = page.js("return document.querySelector('#live-runner').hidden").await;
    assert_eq!(heading, false, "the section shows once a runner is known");

    // A session of an unpriced runner, listed and stopped from the page.
    s.add_runner(RunnerSpec::persistent("free-1", "free-app", 2));
    gw.runner_until(&format!("{id}:free-1"), "routable", |p| p["routable"] == true).await;
    let opened = read(gw.client.post(format!("{}/apps/free-app/session", gw.http)).send().await).await;
    assert_eq!(opened.status, 200, "{:?}", String::from_utf8_lossy(&opened.body));
    let sid = opened.json()["session_id"].as_str().expect("session id").to_string();
    let row = format!("tr[data-session=\"{sid}\"]");
    let listed = format!("return document.querySelectorAll('{row}').length");
    eventually("the page lists the session", 250, || async { (page.js(&listed).await == 1).then_some(()) }).await;
    assert_eq!(s.state.runner_sessions("free-1").len(), 1);
    page.click(&format!("{row} button.stop-session")).await;
    eventually("the page drops the stopped session", 250, || async { (page.js(&listed).await == 0).then_some(()) })
        .await;
    assert!(s.state.runner_sessions("free-1").is_empty(), "the stop released it at its runner");

    // The runner's trip button opens its breaker.
    page.click(&format!("tr[data-runner=\"{runner}\"] button.trip-runner")).await;
    eventually("the page shows the runner's breaker open", 250, || async {
        (page.js(&cell("state")).await == "open").then_some(())
    })
    .await;
    assert_eq!(gw.runner(&runner).await["breaker"]["state"], "open", "the click reached the gateway");
    page.driver.call("DELETE", &format!("/session/{}", page.sid), None).await;
}

/// The plots' history (`GET /admin/history`) samples every period and keeps its window: the
/// oldest sample goes as a new one comes, and pairs past `history.max_pairs` get no series.
#[actix_web::test]
async fn the_history_keeps_a_window_of_samples_for_at_most_max_pairs() {
    let a = sim("a", &[("depth", healthy()), ("upscale", healthy())]);
    let gw = gateway_with(&[(&a, &["depth", "upscale"])], |c| {
        c.history.period = Duration::from_millis(100);
        c.history.window = Duration::from_millis(500);
        c.history.max_pairs = 1;
    })
    .await;
    let full = eventually("five samples", 500, || async {
        let h = gw.admin_get("/admin/history").await.json();
        (h["samples"].as_array().map(Vec::len) == Some(5)).then_some(h)
    })
    .await;
    assert_eq!(
        (full["period_ms"].clone(), full["window_ms"].clone(), full["samples_max"].clone()),
        (json!(100), json!(500), json!(5))
    );
    let first = full["samples"][0].as_u64().expect("unix ms");
    let later = eventually("the window moves on", 500, || async {
        let h = gw.admin_get("/admin/history").await.json();
        (h["samples"][0].as_u64().is_some_and(|t| t > first)).then_some(h)
    })
    .await;
    assert_eq!(later["samples"].as_array().map(Vec::len), Some(5), "still five: {later}");
    let pairs = later["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 1, "one pair has series: {later}");
    assert_eq!(later["pairs_omitted"], 1);
    assert_eq!(pairs[0]["latency_p50_ms"].as_array().map(Vec::len), Some(5), "one value per sample");
    let caps: Vec<&str> =
        later["capabilities"].as_array().expect("caps").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(caps, vec!["depth", "upscale"]);
}
