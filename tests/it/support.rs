//! Test harness: simulators, an in-process gateway, a gateway subprocess, and HTTP helpers.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use byoc_actors::protocol::header::encode_client_header;
use byoc_gateway::app::Gateway;
use byoc_gateway::config::{Config, StaticOrchestrator};
use byoc_sim::{self as sim, Knobs, SimHandle};
use serde_json::{json, Value};

pub const TOKEN: &str = "test-token";

/// Starts a simulator on a free loopback port.
pub fn sim(name: &str, caps: &[(&str, Knobs)]) -> SimHandle {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind sim");
    sim::start(name, listener, caps).expect("start sim")
}

/// Knobs with a small latency (so in-flight counts are visible) and nothing else.
pub fn healthy() -> Knobs {
    Knobs { latency_ms: 2, ..Knobs::default() }
}

/// A config for tests: loopback port 0, a temp data dir, a token, fast token retries.
pub fn config(data_dir: &Path, orchestrators: &[(&SimHandle, &[&str])]) -> Config {
    let mut cfg = Config {
        http_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        admin_token: Some(TOKEN.into()),
        workers: 2,
        shutdown_grace: Duration::from_secs(5),
        orchestrators: orchestrators
            .iter()
            .map(|(s, caps)| StaticOrchestrator {
                url: s.url.clone(),
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
                label: None,
            })
            .collect(),
        ..Config::default()
    };
    // Token refreshes are off the request path; make them rare so tests control when a pair
    // learns about a change (only jobs and explicit waits move state).
    cfg.routing.token_refresh = Duration::from_secs(60);
    cfg.routing.token_retry = Duration::from_millis(200);
    // Tests run side by side: each RTMP ingest on a port of its own.
    cfg.streams.rtmp_addr = "127.0.0.1:0".into();
    cfg
}

/// An in-process gateway plus an HTTP client.
pub struct TestGateway {
    pub gw: Gateway,
    pub http: String,
    pub admin: String,
    pub client: awc::Client,
    _dir: Option<tempfile::TempDir>,
}

/// Starts a gateway from `cfg` (its data dir is kept alive by `dir`).
pub async fn start(cfg: Config, dir: Option<tempfile::TempDir>) -> TestGateway {
    launch(cfg.validate().expect("valid test config"), dir).await
}

/// Starts a validated gateway and waits for every configured pair's first probe.
async fn launch(v: byoc_gateway::config::Validated, dir: Option<tempfile::TempDir>) -> TestGateway {
    let gw = Gateway::start(v).await.expect("gateway starts");
    let http = format!("http://{}", gw.http_addr);
    let admin = format!("http://{}", gw.admin_addr);
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let gw = TestGateway { gw, http, admin, client, _dir: dir };
    // Jobs are routed to the pairs that have probed; a pair still on its first probe is
    // skipped. Tests reason about every configured orchestrator, so they start once each pair's
    // first probe has finished (on a loaded machine that can take a moment).
    eventually("every pair's first token probe", 500, || async {
        first_probes_done(&gw.admin_get("/admin/pairs").await.json()).then_some(())
    })
    .await;
    gw
}

/// Whether a `GET /admin/pairs` answer shows every pair past its first token probe.
fn first_probes_done(pairs: &Value) -> bool {
    pairs.as_array().is_some_and(|a| a.iter().all(|p| p["unroutable_reason"] != "token-pending"))
}

/// A gateway in front of the given simulators, with a fresh temp data dir.
pub async fn gateway(orchestrators: &[(&SimHandle, &[&str])]) -> TestGateway {
    gateway_with(orchestrators, |_| {}).await
}

/// Like [`gateway`], with a chance to adjust the config first.
pub async fn gateway_with(orchestrators: &[(&SimHandle, &[&str])], adjust: impl FnOnce(&mut Config)) -> TestGateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), orchestrators);
    adjust(&mut cfg);
    start(cfg, Some(dir)).await
}

/// A healthy orchestrator slower than the neutral latency a new pair starts with (100 ms):
/// once it has answered, an untried pair looks cheaper, so selection tries that one next.
/// This makes "the faulty orchestrator gets tried" deterministic within two jobs.
pub fn healthy_but_slower() -> Knobs {
    Knobs { latency_ms: 150, ..Knobs::default() }
}

/// Starts a gateway the way `byoc-gateway run` does: from flags (and a config file), so that
/// a reload re-reads that file.
pub async fn start_from_args(args: byoc_gateway::cli::RunArgs, dir: Option<tempfile::TempDir>) -> TestGateway {
    launch(Config::load(&args).expect("valid config"), dir).await
}

/// A `Livepeer` header for `capability`.
pub fn job_header(capability: &str, id: &str) -> String {
    encode_client_header(
        &json!({"id": id, "capability": capability, "request": "{\"stream_id\":\"s\"}", "timeout_seconds": 10}),
    )
}

/// An HTTP answer, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// Asserts the body is the documented JSON error with `code` (and the AI runner's
    /// `detail.msg` beside it); returns it.
    pub fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        assert!(
            self.header("content-type").is_some_and(|c| c.starts_with("application/json")),
            "error must be JSON, headers {:?}",
            self.headers
        );
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        // The AI runner's error shape, which the livepeer-ai SDK parses, carries the same text.
        assert_eq!(v["detail"]["msg"], v["error"]["message"], "{v}");
        v
    }
}

pub async fn read(
    resp: Result<
        awc::ClientResponse<impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin>,
        awc::error::SendRequestError,
    >,
) -> Answer {
    let mut resp = resp.expect("request sent");
    let body = resp.body().limit(64 << 20).await.expect("body read");
    Answer { status: resp.status().as_u16(), headers: resp.headers().clone(), body }
}

impl TestGateway {
    /// Posts a job in the background (a job in flight while the test changes something).
    pub fn spawn_job(&self, capability: &str, id: &str) -> actix_web::rt::task::JoinHandle<Answer> {
        let (c, url) = (self.client.clone(), format!("{}/process/request/{capability}", self.http));
        let header = job_header(capability, id);
        actix_web::rt::spawn(async move {
            read(c.post(url).insert_header(("Livepeer", header)).send_body("{}").await).await
        })
    }

    /// Posts a job for `capability` with a JSON body.
    pub async fn job(&self, capability: &str, id: &str) -> Answer {
        let req = self
            .client
            .post(format!("{}/process/request/{capability}", self.http))
            .insert_header(("Livepeer", job_header(capability, id)))
            .insert_header(("Content-Type", "application/json"));
        read(req.send_body(format!("{{\"job\":\"{id}\"}}")).await).await
    }

    pub async fn admin_get(&self, path: &str) -> Answer {
        read(self.client.get(format!("{}{path}", self.admin)).bearer_auth(TOKEN).send().await).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Answer {
        read(self.client.post(format!("{}{path}", self.admin)).bearer_auth(TOKEN).send_json(&body).await).await
    }

    pub async fn admin_put(&self, path: &str, body: Value) -> Answer {
        read(self.client.put(format!("{}{path}", self.admin)).bearer_auth(TOKEN).send_json(&body).await).await
    }

    pub async fn admin_patch(&self, path: &str, body: Value) -> Answer {
        read(self.client.patch(format!("{}{path}", self.admin)).bearer_auth(TOKEN).send_json(&body).await).await
    }

    pub async fn admin_delete(&self, path: &str) -> Answer {
        read(self.client.delete(format!("{}{path}", self.admin)).bearer_auth(TOKEN).send().await).await
    }

    /// The pairs of one capability, as the admin API shows them.
    pub async fn pairs(&self, capability: &str) -> Vec<Value> {
        let a = self.admin_get(&format!("/admin/pairs?capability={capability}")).await;
        assert_eq!(a.status, 200);
        a.json().as_array().cloned().unwrap_or_default()
    }

    /// The pair of `capability` on the orchestrator at `url`.
    pub async fn pair(&self, capability: &str, url: &str) -> Value {
        self.find_pair(capability, url).await.unwrap_or_else(|| panic!("no {capability} pair for {url}"))
    }

    /// The pair of `capability` on the orchestrator at `url`, if it exists (an orchestrator
    /// that does not declare a capability gets its pair once a survey finds it offers it).
    pub async fn find_pair(&self, capability: &str, url: &str) -> Option<Value> {
        self.pairs(capability).await.into_iter().find(|p| p["orchestrator_url"] == url)
    }
}

/// A file of the keystore fixtures (`actors/tests/fixtures/keystore`).
pub fn keystore_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/tests/fixtures/keystore").join(name)
}

/// Configures the fixture key (`scrypt.json`, unlocked with `password.txt`): a gateway that signs
/// and can pay.
pub fn with_key(c: &mut Config) {
    c.signer.keystore = Some(keystore_fixture("scrypt.json"));
    c.signer.password_file = Some(keystore_fixture("password.txt"));
}

/// Sends `depth` jobs, each of which must be answered 200 by `served_by`, until `done` holds
/// (after at least 5 jobs, at most 60): selection is randomised, so a test waiting for a pair
/// to be tried sends jobs until it has been.
pub async fn jobs_served_by(gw: &TestGateway, served_by: &SimHandle, done: impl Fn() -> bool) {
    for i in 0..60 {
        let answer = gw.job("depth", &format!("j{i}")).await;
        assert_eq!(answer.status, 200, "job {i}: {:?}", answer.body);
        assert_eq!(answer.header("x-orchestrator-url").as_deref(), Some(served_by.url.as_str()), "job {i}");
        if i >= 4 && done() {
            return;
        }
    }
}

/// Polls `check` until it returns `Some`, at most `tries` times, 20 ms apart: awaiting an
/// observable state change (for example a restart visible in the admin API) without
/// assuming how long it takes.
pub async fn eventually<T, F, Fut>(what: &str, tries: usize, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for: {what}");
}

/// Flags for a gateway process (`byoc-gateway [run]`): loopback port 0 for both listeners,
/// `data` as data dir, the test token, then `extra`.
pub fn gateway_args<'a>(data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args =
        vec!["--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir", data, "--admin-token", TOKEN];
    args.extend_from_slice(extra);
    args
}

/// A gateway running as a separate process (for restarts, signals and exit codes).
pub struct Process {
    pub child: Child,
    pub http: String,
    pub admin: String,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_byoc-gateway"))
}

impl Process {
    /// Spawns `byoc-gateway run` with `args` and waits for its ready line.
    pub fn spawn(args: &[&str]) -> Process {
        Self::spawn_with(args, &[("RUST_LOG", "warn")], None)
    }

    /// Like [`Process::spawn`] with extra environment and, optionally, stderr to a file.
    pub fn spawn_with(args: &[&str], env: &[(&str, &str)], stderr: Option<&Path>) -> Process {
        let stderr = match stderr {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("stderr file")),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(binary())
            .args(args)
            .env("BYOC_GATEWAY_RTMP_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn gateway");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("byoc-gateway ready") => break line,
                Some(Ok(_)) => continue,
                _ => panic!("gateway exited before it was ready: {:?}", child.wait()),
            }
        };
        let field = |k: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(|a| format!("http://{a}"))
                .expect("address in ready line")
        };
        Process { http: field("http="), admin: field("admin="), child }
    }

    /// Waits until every pair has finished its first token probe, as [`launch`] does: a job
    /// sent earlier skips a pair still probing (or waits `routing.probe_wait` for it), which
    /// on a loaded machine makes a test's first job race the probe.
    pub async fn wait_probed(&self) {
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let url = format!("{}/admin/pairs", self.admin);
        eventually("every pair's first token probe", 500, || async {
            let mut res = client.get(&url).bearer_auth(TOKEN).send().await.ok()?;
            let v: serde_json::Value = res.json().limit(64 << 20).await.ok()?;
            first_probes_done(&v).then_some(())
        })
        .await;
    }

    /// Sends `signal` (TERM, INT, KILL) and returns the exit code (None if killed by a signal).
    pub fn signal_and_wait(mut self, signal: &str) -> Option<i32> {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().expect("kill");
        assert!(status.success());
        self.child.wait().expect("wait").code()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test needs from the machine beyond Rust.
#[derive(Debug, Clone, Copy)]
pub enum Needs {
    /// Python 3.12 with the PyPI clients (`.venv`).
    Python,
    /// Chromium and its driver.
    Browser,
    /// Root (a tmpfs mount).
    Root,
    /// A system tool (`ss`).
    Tool,
}

impl Needs {
    fn as_str(self) -> &'static str {
        match self {
            Needs::Python => "python",
            Needs::Browser => "browser",
            Needs::Root => "root",
            Needs::Tool => "tool",
        }
    }
}

/// Reports that `test` could not run and why, as a `SKIPPED` line on the terminal (past the
/// test harness's output capture; `.ci/run` repeats them at the end of its output). When
/// `BYOC_TEST_REQUIRE` lists what the test needs (`python,browser,root,tool`, or `all`), a skip
/// is a failure instead: `.ci/run` sets it for what it installs.
pub fn skip(needs: Needs, test: &str, why: &str) {
    let required = std::env::var("BYOC_TEST_REQUIRE").unwrap_or_default();
    let required = required.split(',').map(str::trim).any(|r| r == "all" || r == needs.as_str());
    assert!(!required, "{test} cannot run ({} required by BYOC_TEST_REQUIRE): {why}", needs.as_str());
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test} (needs {}): {why}", needs.as_str());
}

/// The Python 3.12 interpreter of the test virtualenv (`.ci/run` creates `.venv` from
/// `tests/python/requirements.txt`; `BYOC_TEST_PYTHON` overrides). `None` when absent outside
/// CI, so a plain `cargo test` on a machine without it skips the Python-client tests with a
/// message; with `BYOC_TEST_REQUIRE=python` (as `.ci/run` sets) its absence fails the test.
pub fn python() -> Option<PathBuf> {
    let path = std::env::var_os("BYOC_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    if path.exists() {
        return Some(path);
    }
    let msg = format!("{} not found: run .ci/run (or create .venv from tests/python/requirements.txt)", path.display());
    skip(Needs::Python, "Python client tests", &msg);
    None
}

/// Runs `script` with the test virtualenv's Python and `args`; returns stdout, failing the test
/// with stderr if it exits non-zero.
pub async fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(python).arg("-c").arg(script).args(args).output().await.expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status);
    stdout
}
