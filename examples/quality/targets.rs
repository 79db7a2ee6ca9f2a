//! The proxies compared, each configured as a careful operator would for this pool: per-server
//! connection limits equal to the orchestrators' capacity, passive and (where the open-source
//! product has them) active health checks, retries on 5xx, connect failures and time-outs, and
//! request buffering so a job can be replayed.
//!
//! Shared by `bench/quality.sh` and `bench/changing.sh` (which includes this file with
//! `#[path]`): what differs between them is passed in [`Setup`].

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use byoc_actors::protocol::signer::Offchain;
use byoc_actors::protocol::token::eth_address_header;

/// A proxy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// byoc-gateway (release build), default policy.
    Gateway,
    /// Debian's HAProxy: leastconn, maxconn, queue, retry-on, active and passive checks.
    Haproxy,
    /// Debian's nginx (open source): least_conn, max_conns, proxy_next_upstream, max_fails.
    Nginx,
}

impl Target {
    /// Its name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Target::Gateway => "byoc-gateway",
            Target::Haproxy => "haproxy",
            Target::Nginx => "nginx",
        }
    }
}

/// A running proxy; stopped when dropped.
pub struct Running {
    child: Child,
    /// Where jobs go.
    pub url: String,
    /// byoc-gateway's admin API (`http://host:port`), for its own view of the run.
    #[allow(dead_code)]
    pub admin: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM first: nginx's workers outlive a killed master.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bound on one job attempt at a peer proxy: about three times the slowest healthy job
/// (the `slow` orchestrator's 700 ms plus jitter), so a hanging orchestrator is left within
/// seconds but a slow answer is not cut.
const PEER_SERVER_TIMEOUT: &str = "2s";

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16, child: &mut Child, what: &str) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(std::io::Error::other(format!("{what} exited at start: {status}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(std::io::Error::other(format!("{what} did not listen within 10 s")))
}

/// What a target is put in front of.
pub struct Setup<'a> {
    /// The orchestrators (`host:port`) with the concurrent jobs each has room for: a peer's
    /// per-server connection limit.
    pub upstreams: &'a [(String, i64)],
    /// The capability every job asks for.
    pub capability: &'a str,
    /// byoc-gateway only: declare the capability for each orchestrator (as a config file
    /// would), rather than list bare URLs that the gateway surveys (as `--orch-addr` does).
    pub declare: bool,
    /// byoc-gateway only: TOML appended to its configuration (empty: its defaults).
    pub gateway_config: &'a str,
}

/// Starts `target` in front of `setup`'s orchestrators, with its files under `dir`.
pub fn start(target: Target, bin: &Path, dir: &Path, setup: &Setup<'_>) -> std::io::Result<Running> {
    std::fs::create_dir_all(dir)?;
    match target {
        Target::Gateway => gateway(bin, dir, setup),
        Target::Haproxy => haproxy(dir, setup),
        Target::Nginx => nginx(dir, setup),
    }
}

fn gateway(bin: &Path, dir: &Path, setup: &Setup<'_>) -> std::io::Result<Running> {
    let cap = setup.capability;
    let mut cfg = String::new();
    for (u, _) in setup.upstreams {
        let declared = if setup.declare { format!("capabilities = [\"{cap}\"]\n") } else { String::new() };
        let _ = writeln!(cfg, "[[orchestrators]]\nurl = \"http://{u}\"\n{declared}");
    }
    cfg.push_str("[log]\nlevel = \"warn\"\n");
    cfg.push_str(setup.gateway_config);
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg)?;
    let data: PathBuf = dir.join("data");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        // No RTMP ingest: the benches send no media, and several gateways on one machine (a
        // fleet, or x2) would all want the default 127.0.0.1:1935.
        .args(["--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--rtmp-addr", "", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("gateway.log"))?)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("byoc-gateway ready") => break line,
            Some(Ok(_)) => continue,
            _ => return Err(std::io::Error::other("the gateway exited before it was ready (see gateway.log)")),
        }
    };
    let field = |k: &str| ready.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
    let http = field("http=").ok_or_else(|| std::io::Error::other("no http= in the ready line"))?;
    let admin = field("admin=").map(|a| format!("http://{a}"));
    Ok(Running { child, url: format!("http://{http}/process/request/{cap}"), admin })
}

fn haproxy(dir: &Path, setup: &Setup<'_>) -> std::io::Result<Running> {
    let cap = setup.capability;
    let port = free_port()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cred = eth_address_header(&Offchain);
    let mut servers = String::new();
    for (i, (u, slots)) in setup.upstreams.iter().enumerate() {
        let _ = writeln!(servers, "  server o{i} {u} check maxconn {slots}");
    }
    let cfg = format!(
        "global
  nbthread {threads}
  log stderr local0 err
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server {PEER_SERVER_TIMEOUT}
  timeout queue 30s
  timeout http-request 10s
  option http-buffer-request
  retries 3
  retry-on conn-failure empty-response response-timeout 500 502 503 504
  option redispatch 1
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance leastconn
  option httpchk
  http-check send meth GET uri /process/token hdr Livepeer-Eth-Address {cred} hdr Livepeer-Capability {cap}
  http-check expect status 200
  default-server inter 1s fall 2 rise 2 observe layer7 error-limit 5 on-error mark-down
{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg)?;
    let mut child = Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log"))?)
        .spawn()?;
    wait_port(port, &mut child, "haproxy")?;
    Ok(Running { child, url: format!("http://127.0.0.1:{port}/process/request/{cap}"), admin: None })
}

/// One HAProxy in front of several instances of a target (`urls`: their job URLs), as an
/// operator puts a load balancer in front of a fleet: `balance` is HAProxy's algorithm
/// (`roundrobin`, `leastconn`), no stickiness, no retries of its own (the instances retry), a
/// TCP check so a dead instance leaves the rotation.
#[allow(dead_code)]
pub fn front(dir: &Path, urls: &[String], capability: &str, balance: &str) -> std::io::Result<Running> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut servers = String::new();
    for (i, u) in urls.iter().enumerate() {
        let hostport = u.trim_start_matches("http://").split('/').next().unwrap_or_default();
        let _ = writeln!(servers, "  server i{i} {hostport} check inter 1s");
    }
    let cfg = format!(
        "global
  nbthread {threads}
  log stderr local0 err
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  retries 0
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance {balance}
{servers}"
    );
    let path = dir.join("front.cfg");
    std::fs::write(&path, cfg)?;
    let mut child = Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("front.log"))?)
        .spawn()?;
    wait_port(port, &mut child, "haproxy (front)")?;
    Ok(Running { child, url: format!("http://127.0.0.1:{port}/process/request/{capability}"), admin: None })
}

fn nginx(dir: &Path, setup: &Setup<'_>) -> std::io::Result<Running> {
    let cap = setup.capability;
    let port = free_port()?;
    let mut servers = String::new();
    for (u, slots) in setup.upstreams {
        let _ = writeln!(servers, "    server {u} max_conns={slots} max_fails=3 fail_timeout=5s;");
    }
    let d = dir.display();
    let user = if is_root() { "user root;\n" } else { "" };
    let cfg = format!(
        "{user}worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream orchestrators {{
    zone orchestrators 64k;
    least_conn;
{servers}    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    location / {{
      proxy_pass http://orchestrators;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_request_buffering on;
      proxy_connect_timeout 1s;
      proxy_read_timeout {PEER_SERVER_TIMEOUT};
      proxy_next_upstream error timeout http_500 http_502 http_503 http_504 http_429 non_idempotent;
      proxy_next_upstream_tries 3;
    }}
  }}
}}
"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, cfg)?;
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nginx.log"))?)
        .spawn()?;
    wait_port(port, &mut child, "nginx")?;
    Ok(Running { child, url: format!("http://127.0.0.1:{port}/process/request/{cap}"), admin: None })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"))
}
