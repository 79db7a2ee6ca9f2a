//! The operator kit against the real thing (issue 27): the Prometheus rules in
//! `deploy/prometheus/` pass `promtool check rules` and their unit tests (`promtool test rules`,
//! every alert firing in one test and silent in another), and a real Prometheus (Debian's, on a
//! free port, scraping every second) scraping a real gateway under a few seconds of load runs
//! every recording rule, every alert and every query of the Grafana dashboard
//! (`deploy/grafana/byoc-gateway.json`): each parses, the recording rules and the panels return
//! data, and none names a metric or a label the gateway does not export. The load includes a
//! live stream (started, a segment each way, moved by a swap, stopped), so the stream rules and
//! panels are checked on real values.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::streams::{all, live, round_trip};
use crate::support::*;
use byoc_sim::Knobs;

/// The live-stream capability of the load (a name of its own: the metrics recorder is shared
/// by every gateway of this process).
const LIVE: &str = "prom-live";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A system tool, or a `SKIPPED` line (a failure under `BYOC_TEST_REQUIRE=tool`).
pub fn tool(name: &str, test: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = format!("{name} is not installed (apt-get install {package}; .ci/run does it)");
        skip(Needs::Tool, test, &why);
    }
    found
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

/// The alerts of the rules file: name -> the lines of its rule.
fn alerts(rules: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in rules.lines() {
        let t = line.trim_start();
        if t.starts_with("- alert:") || t.starts_with("- record:") || t.starts_with("- name:") {
            if let Some((name, body)) = current.take() {
                out.insert(name, body);
            }
            if let Some(name) = t.strip_prefix("- alert:") {
                current = Some((name.trim().to_string(), String::new()));
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((name, body)) = current {
        out.insert(name, body);
    }
    out
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn the_rules_pass_promtool_and_every_alert_is_tested_both_ways_and_documented() {
    let Some(promtool) = tool("promtool", "promtool rules check", "prometheus") else { return };
    let dir = repo("deploy/prometheus");
    let out = run_ok(Command::new(&promtool).current_dir(&dir).args(["check", "rules", "byoc-gateway.rules.yml"]));
    assert!(out.contains("SUCCESS"), "{out}");
    run_ok(Command::new(&promtool).current_dir(&dir).args(["check", "config", "prometheus.yml"]));
    let out = run_ok(Command::new(&promtool).current_dir(&dir).args(["test", "rules", "byoc-gateway.rules.test.yml"]));
    assert!(out.contains("SUCCESS"), "{out}");

    let rules = std::fs::read_to_string(dir.join("byoc-gateway.rules.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("byoc-gateway.rules.test.yml")).expect("rule tests");
    let docs = std::fs::read_to_string(repo("docs/production.md")).expect("docs/production.md");
    let anchors: BTreeSet<String> =
        docs.lines().filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## "))).map(anchor).collect();
    let alerts = alerts(&rules);
    assert!(alerts.len() >= 10, "{alerts:?}");
    // Each alert's tests: does one expect it to fire, does another expect silence.
    let mut fires: BTreeSet<&str> = BTreeSet::new();
    let mut silent: BTreeSet<&str> = BTreeSet::new();
    let lines: Vec<&str> = tests.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.trim().strip_prefix("alertname:") else { continue };
        let name = name.trim();
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        match next {
            "exp_alerts: []" => silent.insert(name),
            "exp_alerts:" => fires.insert(name),
            other => panic!("alertname {name} is followed by {other:?}"),
        };
    }
    for (name, body) in &alerts {
        assert!(fires.contains(name.as_str()), "{name} has no test in which it fires");
        assert!(silent.contains(name.as_str()), "{name} has no test in which it stays silent");
        assert!(body.contains("\n        for: "), "{name} has no for: duration");
        assert!(body.contains("summary: "), "{name} has no summary");
        let runbook = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: "))
            .unwrap_or_else(|| panic!("{name} has no runbook_url"))
            .trim_matches('"');
        let (page, fragment) = runbook.split_once('#').unwrap_or((runbook, ""));
        assert_eq!(page, "docs/production.md", "{name}");
        assert_eq!(fragment, name.to_lowercase(), "{name}: the runbook anchor is the alert's name");
        assert!(anchors.contains(fragment), "{name}: docs/production.md has no heading for #{fragment}");
    }
}

/// A Prometheus server (Debian's) on a free loopback port, stopped on drop.
struct Prometheus {
    child: Child,
    url: String,
    client: awc::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port of `/metrics`) every second, with the
    /// repository's rules evaluated every second.
    async fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = repo("deploy/prometheus/byoc-gateway.rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: byoc-gateway\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            client: awc::Client::builder().timeout(Duration::from_secs(30)).finish(),
            _dir: dir,
        };
        eventually("prometheus ready", 1500, || async {
            let r = p.client.get(format!("{}/-/ready", p.url)).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        p
    }

    /// `GET /api/v1/{path}?{query}`'s `data`, failing the test on an error status.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let a = read(self.client.get(format!("{}/api/v1/{path}?{query}", self.url)).send().await).await;
        let v = a.json();
        assert_eq!(v["status"], "success", "{path} {params:?}: {v}");
        v["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        match data["resultType"].as_str() {
            Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
            Some("scalar") => vec![data["result"].clone()],
            other => panic!("{expr}: unexpected result type {other:?}"),
        }
    }

    /// The label names of every series of `metric`.
    async fn labels_of(&self, metric: &str) -> BTreeSet<String> {
        let series = self.api("series", &[("match[]", &format!("{{__name__=\"{metric}\"}}"))]).await;
        series
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s.as_object().into_iter().flatten().map(|(k, _)| k.clone()))
            .collect()
    }
}

/// The metric names and label names a PromQL expression mentions: names are the identifiers
/// with `byoc_gateway` in them; labels are those matched in `{...}` and those of `by`,
/// `without`, `on`, `ignoring`, `group_left` and `group_right` lists. String literals are
/// skipped.
fn names_and_labels(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            let mut escaped = false;
            for d in chars.by_ref() {
                if !escaped && d == c {
                    break;
                }
                escaped = !escaped && d == '\\';
            }
            tokens.push("\"\"".into());
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut ident = c.to_string();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    ident.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(ident);
        } else if c == '[' {
            // A range or subquery: skip it (durations are not names).
            for d in chars.by_ref() {
                if d == ']' {
                    break;
                }
            }
        } else if !c.is_whitespace() {
            let mut op = c.to_string();
            if matches!(c, '=' | '!') && matches!(chars.peek(), Some('=') | Some('~')) {
                op.push(chars.next().unwrap_or(' '));
            }
            tokens.push(op);
        }
    }
    let (mut names, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let mut depth_braces = 0;
    let mut in_list = false;
    for (i, t) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1).map(String::as_str);
        match t.as_str() {
            "{" => depth_braces += 1,
            "}" => depth_braces -= 1,
            "(" if i > 0
                && matches!(
                    tokens[i - 1].as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) =>
            {
                in_list = true
            }
            ")" => in_list = false,
            _ if t.contains("byoc_gateway") => {
                names.insert(t.clone());
            }
            _ if depth_braces > 0 && matches!(next, Some("=" | "!=" | "=~" | "!~")) => {
                labels.insert(t.clone());
            }
            _ if in_list && t != "," => {
                labels.insert(t.clone());
            }
            _ => {}
        }
    }
    (names, labels)
}

/// The Grafana variables in a query, with the values the test gives them: every capability and
/// orchestrator (the dashboard's "All"), Grafana's rate interval.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("${capability}", ".*")
        .replace("$capability", ".*")
        .replace("${orchestrator}", ".*")
        .replace("$orchestrator", ".*")
}

/// What is wrong with the names in `expr`: a metric Prometheus does not have from the gateway
/// (or from a recording rule), or a label none of those metrics' series carries.
async fn problems(prom: &Prometheus, known: &BTreeSet<String>, expr: &str) -> Vec<String> {
    let (names, labels) = names_and_labels(expr);
    let mut out = Vec::new();
    if names.is_empty() {
        out.push("names no byoc-gateway metric".to_string());
    }
    let mut carried: BTreeSet<String> = BTreeSet::new();
    for name in &names {
        if !known.contains(name) {
            out.push(format!("{name} is not a metric the gateway exports (or a recorded one)"));
        }
        carried.extend(prom.labels_of(name).await);
    }
    for label in labels.iter().filter(|l| !carried.contains(*l)) {
        out.push(format!("no series of {names:?} carries the label {label}"));
    }
    out
}

/// Fails the test on any of [`problems`].
async fn check_names(prom: &Prometheus, known: &BTreeSet<String>, what: &str, expr: &str) {
    let found = problems(prom, known, expr).await;
    assert!(found.is_empty(), "{what}: {found:?} in {expr}");
}

#[actix_web::test]
async fn every_rule_and_every_dashboard_query_runs_against_a_real_gateway() {
    let Some(prometheus) = tool("prometheus", "Prometheus dashboard and rules test", "prometheus") else { return };
    // Unique capability names: the metrics recorder is shared by every gateway of this process.
    let (fast_knobs, slow_knobs) = (
        Knobs { latency_ms: 5, capacity: 2, ..Knobs::default() },
        Knobs { latency_ms: 40, capacity: 1, ..Knobs::default() },
    );
    let fast = sim("fast", &[("prom-depth", fast_knobs.clone()), ("prom-i2i", fast_knobs), (LIVE, live())]);
    let slow = sim("slow", &[("prom-depth", slow_knobs.clone()), ("prom-i2i", slow_knobs), (LIVE, live())]);
    let broken = sim("broken", &[("prom-depth", Knobs { error_rate: 1.0, latency_ms: 2, ..Knobs::default() })]);
    let gw = gateway_with(
        &[
            (&fast, &["prom-depth", "prom-i2i", LIVE]),
            (&slow, &["prom-depth", "prom-i2i", LIVE]),
            (&broken, &["prom-depth"]),
        ],
        |c| {
            for (o, label) in c.orchestrators.iter_mut().zip(["fast", "slow", "broken"]) {
                o.label = Some(label.into());
            }
        },
    )
    .await;
    let target = gw.admin.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&prometheus, &target).await;

    // A live stream, with a media segment each way, for the stream rules and panels: once
    // Prometheus has scraped its counters at zero (a rate counts only what it saw increase).
    eventually("prometheus scraped the stream counters at zero", 1500, || async {
        let q = format!("byoc_gateway_stream_starts_total{{capability=\"{LIVE}\", outcome=\"started\"}} == 0");
        (!prom.query(&q).await.is_empty()).then_some(())
    })
    .await;
    let started = gw.start_stream(LIVE, &all(), &json!({"stream_id": "prom-s1", "params": "{}"})).await;
    assert_eq!(started.status, 200, "{}", String::from_utf8_lossy(&started.body));
    let urls = started.json();
    let out = round_trip(&gw, &urls, 0, b"frame").await;
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));

    // A few seconds of load: bursts of concurrent jobs on both capabilities (more than the
    // pool's slots, so some queue), the broken orchestrator failing over.
    let mut sent = 0;
    for round in 0..6 {
        let jobs: Vec<_> = (0..12)
            .map(|i| gw.spawn_job(if i % 3 == 0 { "prom-i2i" } else { "prom-depth" }, &format!("r{round}-{i}")))
            .collect();
        for j in jobs {
            let a = j.await.expect("job task");
            assert!(a.status < 500 || a.status == 503, "job answered {}: {:?}", a.status, a.body);
            sent += 1;
        }
    }
    let broken_id = gw.pair("prom-depth", &broken.url).await["orchestrator"].as_str().expect("id").to_string();

    // Prometheus sees the live stream; then its orchestrator loses it (the stream moves: a
    // swap), and the client stops it.
    eventually("prometheus saw the live stream", 1500, || async {
        let v = prom.query(&format!("capability:byoc_gateway_streams_active:sum{{capability=\"{LIVE}\"}} == 1")).await;
        (!v.is_empty()).then_some(())
    })
    .await;
    assert_eq!(fast.state.vanish_streams() + slow.state.vanish_streams(), 1);
    eventually("the stream moved", 500, || async {
        let r = gw.admin_get("/admin/streams/prom-s1").await.json();
        (r["swaps"] == 1 && r["state"] == "running").then_some(())
    })
    .await;
    let stop = read(gw.client.post(urls["stop_url"].as_str().expect("stop url")).send_body("bye").await).await;
    assert_eq!(stop.status, 200, "{}", String::from_utf8_lossy(&stop.body));
    assert_eq!(gw.admin_post(&format!("/admin/pairs/{broken_id}/prom-depth/trip"), json!({})).await.status, 200);

    // Prometheus has scraped every one of those jobs, and the rules have run on them.
    eventually("prometheus scraped the load", 1500, || async {
        let v = prom.query("sum(byoc_gateway_requests_total{capability=~\"prom-.*\"})").await;
        let n: f64 = v.first().and_then(|s| s["value"][1].as_str()).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        (n >= f64::from(sent)).then_some(())
    })
    .await;
    // The stream rules computed the stream's life from what the gateway exported.
    for (expr, what) in [
        (format!("capability_reason:byoc_gateway_stream_swaps:rate5m{{capability=\"{LIVE}\", reason=~\"channel-.*\"}} > 0"), "the swap"),
        (format!("capability:byoc_gateway_stream_swaps:rate5m{{capability=\"{LIVE}\"}} > 0"), "the swap of a running stream"),
        (format!("capability_reason:byoc_gateway_stream_ends:rate5m{{capability=\"{LIVE}\", reason=\"stopped\"}} > 0"), "the stop"),
        (format!("capability:byoc_gateway_stream_starts:rate5m{{capability=\"{LIVE}\"}} > 0"), "the start"),
        (format!("capability:byoc_gateway_stream_starts_failed:ratio_rate5m{{capability=\"{LIVE}\"}} == 0"), "no failed start"),
        ("count(direction:byoc_gateway_stream_segment_duration_seconds:p99_rate5m >= 0) == 2".to_string(), "segments both ways"),
        (format!("capability:byoc_gateway_streams_active:sum{{capability=\"{LIVE}\"}} == 0"), "no live stream left"),
    ] {
        eventually(&format!("prometheus recorded {what}: {expr}"), 1500, || async {
            (!prom.query(&expr).await.is_empty()).then_some(())
        })
        .await;
    }
    // Every histogram is a histogram, not a summary (a summary cannot be aggregated).
    let text = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).into_owned();
    let summaries: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ") && l.ends_with(" summary")).collect();
    assert!(summaries.is_empty(), "{summaries:?}");
    let groups = prom.api("rules", &[]).await["groups"].as_array().cloned().unwrap_or_default();
    let rules: Vec<Value> = groups.iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).collect();
    let recorded: Vec<String> = rules
        .iter()
        .filter(|r| r["type"] == "recording")
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    assert!(recorded.len() >= 8, "{rules:?}");
    for name in &recorded {
        eventually(&format!("the recording rule {name} has data"), 1500, || async {
            (!prom.query(name).await.is_empty()).then_some(())
        })
        .await;
    }
    let rules = prom.api("rules", &[]).await["groups"].as_array().cloned().unwrap_or_default();
    let known: BTreeSet<String> = prom
        .api("label/__name__/values", &[])
        .await
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for rule in rules.iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()) {
        let (name, expr) = (rule["name"].as_str().unwrap_or("?"), rule["query"].as_str().unwrap_or(""));
        assert_eq!(rule["health"], "ok", "rule {name} failed to evaluate: {rule}");
        check_names(&prom, &known, &format!("rule {name}"), expr).await;
    }

    // The dashboard: importable shape, its variables, and every panel's query.
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/byoc-gateway.json")).expect("dashboard"))
            .expect("the dashboard is JSON");
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned().unwrap_or_else(|| panic!("no ${n} variable"));
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["capability", "orchestrator"] {
        let v = var(name);
        let q = v["query"]["query"].as_str().or(v["query"].as_str()).expect("variable query").to_string();
        let (metric, label) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|r| r.rsplit_once(", "))
            .unwrap_or_else(|| panic!("${name}: {q}"));
        assert_eq!(label, name);
        let series = prom.api("series", &[("match[]", &substitute(metric))]).await;
        let values: BTreeSet<&str> =
            series.as_array().into_iter().flatten().filter_map(|s| s[label].as_str()).collect();
        assert!(!values.is_empty(), "${name} would offer nothing: {q}");
        check_names(&prom, &known, &format!("${name}"), &substitute(metric)).await;
    }
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "duplicate panel id: {panel}");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "panel without a position: {}", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}: the datasource is the variable", panel["title"]);
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
            let expr = substitute(target["expr"].as_str().expect("expr"));
            let what = format!("panel {:?}", panel["title"]);
            let result = prom.query(&expr).await;
            assert!(!result.is_empty(), "{what} returns no data: {expr}");
            check_names(&prom, &known, &what, &expr).await;
            queries += 1;
        }
    }
    assert!(queries >= 30, "{queries} queries");
    // The check above catches a metric or a label the gateway does not export.
    for bogus in [
        "rate(byoc_gateway_requests_totl[5m])",
        "sum by (orchestrator) (rate(byoc_gateway_requests_total[5m]))",
        "byoc_gateway_pair_routable{orchestrator_label=\"fast\"}",
    ] {
        assert!(!problems(&prom, &known, bogus).await.is_empty(), "{bogus} passed the check");
    }
    // The operator's labels reach Prometheus only through the info metric.
    let info = prom.query("byoc_gateway_orchestrator_info{orchestrator_label=\"broken\"}").await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(prom.query("{orchestrator_label!=\"\", __name__!=\"byoc_gateway_orchestrator_info\"}").await.is_empty());
}

#[test]
fn the_query_checker_sees_names_and_labels() {
    let (names, labels) = names_and_labels(
        "sum by (capability, le) (rate(byoc_gateway_x_bucket{outcome!=\"a,b\", result=~\"x|y\"}[5m])) / on (instance) group_left (orchestrator_label) capability:byoc_gateway_y:rate5m",
    );
    assert_eq!(names, ["byoc_gateway_x_bucket", "capability:byoc_gateway_y:rate5m"].map(String::from).into());
    assert_eq!(
        labels,
        ["capability", "le", "outcome", "result", "instance", "orchestrator_label"].map(String::from).into()
    );
}
