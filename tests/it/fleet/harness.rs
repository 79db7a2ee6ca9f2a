//! What the fleet tests run: a real etcd (Debian's `etcd-server`) on free loopback ports in a
//! temp dir, which a test can kill, restart and compact; a TCP relay between one replica and
//! etcd that a test can cut (a partition of that replica alone); replicas in process or as
//! processes; and an etcd behind TLS with its authentication on, whose test CA and user
//! password the tests write with Debian's `openssl` and `etcdctl`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use byoc_actors::registry::Backend;
use byoc_gateway::config::Config;

use crate::support::{eventually, skip, Needs};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A real etcd, one member, on loopback.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    peer_port: u16,
    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub url: String,
    /// With TLS: the directory of the test CA (`ca.crt`) and etcd's certificate and key.
    tls: Option<std::path::PathBuf>,
}

/// The root user and its password file of a secure etcd ([`Etcd::start_secure`]).
pub const ETCD_USER: &str = "root";
/// The root user's password (a test value: the tests check it is never shown).
pub const ETCD_PASSWORD: &str = "s3cret-etcd-pass";

/// Runs `cmd` and says whether it succeeded; `None` when the program is not installed.
fn run(cmd: &mut Command) -> Option<bool> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().ok().map(|s| s.success())
}

impl Etcd {
    /// Starts etcd, or reports the test skipped (`None`) when it is not installed.
    pub async fn start(test: &str) -> Option<Etcd> {
        if Command::new("etcd").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            skip(Needs::Tool, test, "`etcd` (Debian's etcd-server) is not installed");
            return None;
        }
        let (client_port, peer_port) = (free_port(), free_port());
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            peer_port,
            url: format!("http://127.0.0.1:{client_port}"),
            tls: None,
        };
        etcd.spawn().await;
        Some(etcd)
    }

    /// Starts etcd serving TLS with a certificate of a test CA (`ca_file()`), with its
    /// authentication enabled and one user, [`ETCD_USER`] with [`ETCD_PASSWORD`]; `None` (a
    /// skip) when etcd, etcdctl or openssl is not installed.
    pub async fn start_secure(test: &str) -> Option<Etcd> {
        for (tool, package) in [("etcd", "etcd-server"), ("etcdctl", "etcd-client"), ("openssl", "openssl")] {
            if run(Command::new(tool).arg("version")).is_none() {
                skip(Needs::Tool, test, &format!("`{tool}` (Debian's {package}) is not installed"));
                return None;
            }
        }
        let (client_port, peer_port) = (free_port(), free_port());
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        let openssl = |args: &[&str]| {
            let ok = run(Command::new("openssl").current_dir(&certs).args(args));
            assert_eq!(ok, Some(true), "openssl {args:?}");
        };
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"];
        openssl(
            &[&["req", "-x509"], &key[..], &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=byoc test CA"]]
                .concat(),
        );
        openssl(
            &[
                &["req", "-x509", "-CA", "ca.crt", "-CAkey", "ca.key"],
                &key[..],
                &["-keyout", "etcd.key", "-out", "etcd.crt", "-subj", "/CN=127.0.0.1"],
                &["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"],
            ]
            .concat(),
        );
        let mut etcd =
            Etcd { child: None, dir, peer_port, url: format!("https://127.0.0.1:{client_port}"), tls: Some(certs) };
        etcd.spawn().await;
        let ctl = |args: &[&str]| {
            let ok = run(Command::new("etcdctl")
                .args(["--endpoints", &etcd.url, "--cacert"])
                .arg(etcd.ca_file())
                .args(args));
            assert_eq!(ok, Some(true), "etcdctl {args:?}");
        };
        ctl(&["user", "add", &format!("{ETCD_USER}:{ETCD_PASSWORD}")]);
        ctl(&["auth", "enable"]);
        Some(etcd)
    }

    /// The test CA's certificate (with [`Etcd::start_secure`]).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.tls.as_ref().map(|d| d.join("ca.crt")).expect("a secure etcd")
    }

    async fn spawn(&mut self) {
        let p = self.peer_port;
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args(["--initial-cluster", &format!("t=http://127.0.0.1:{p}")])
            .args(["--logger", "zap", "--log-level", "error"]);
        if let Some(certs) = &self.tls {
            cmd.arg("--cert-file").arg(certs.join("etcd.crt")).arg("--key-file").arg(certs.join("etcd.key"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("etcd.log")).map(Stdio::from).unwrap_or(Stdio::null()))
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        if self.tls.is_some() {
            let ca = self.ca_file();
            eventually("etcd healthy (TLS)", 500, || async {
                let mut cmd = Command::new("etcdctl");
                cmd.args(["--endpoints", &self.url, "--cacert"]).arg(&ca).args(["endpoint", "health"]);
                (run(&mut cmd) == Some(true)).then_some(())
            })
            .await;
            return;
        }
        let client = awc::Client::builder().timeout(Duration::from_secs(2)).finish();
        let health = format!("{}/health", self.url);
        eventually("etcd healthy", 500, || async {
            let mut r = client.get(&health).send().await.ok()?;
            let body = r.body().await.ok()?;
            String::from_utf8_lossy(&body).contains("\"health\":\"true\"").then_some(())
        })
        .await;
    }

    /// `kill -9`: etcd is gone (connections reset, new ones refused).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports with the same data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Compacts etcd's history up to its current revision (`etcdctl compact`); false when
    /// etcdctl is missing (reported as a skip).
    pub fn compact(&self, test: &str) -> bool {
        let status =
            Command::new("etcdctl").args(["--endpoints", &self.url, "endpoint", "status", "-w", "json"]).output();
        let Ok(out) = status else {
            skip(Needs::Tool, test, "`etcdctl` (Debian's etcd-client) is not installed");
            return false;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let rev = text.split("\"revision\":").nth(1).and_then(|s| s.split([',', '}']).next()).expect("revision");
        let ok = Command::new("etcdctl")
            .args(["--endpoints", &self.url, "compact", rev.trim()])
            .stdout(Stdio::null())
            .status()
            .expect("etcdctl");
        assert!(ok.success(), "etcdctl compact {rev}");
        true
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay in front of etcd for one replica: `cut()` closes its connections and refuses new
/// ones (that replica alone loses etcd, as when etcd is down), `blackhole()` keeps them open but
/// passes nothing (a partition: requests go unanswered), `heal()` lets traffic through again.
pub struct Relay {
    /// `http://127.0.0.1:PORT` to give the replica.
    pub url: String,
    state: Arc<AtomicU8>,
}

const OPEN: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;

impl Relay {
    pub fn start(target: &str) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let target = target.trim_start_matches("http://").to_string();
        let state = Arc::new(AtomicU8::new(OPEN));
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else { continue };
                    if st.load(Ordering::SeqCst) == CUT {
                        drop(inbound);
                        continue;
                    }
                    let (target, st) = (target.clone(), st.clone());
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                        loop {
                            let passing = st.load(Ordering::SeqCst) == OPEN;
                            if passing {
                                let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                                let changed = async {
                                    while st.load(Ordering::SeqCst) == OPEN {
                                        tokio::time::sleep(Duration::from_millis(20)).await;
                                    }
                                };
                                tokio::select! { _ = copy => return, _ = changed => {} }
                            }
                            match st.load(Ordering::SeqCst) {
                                CUT => return,
                                _ => tokio::time::sleep(Duration::from_millis(20)).await,
                            }
                        }
                    });
                }
            });
        });
        Relay { url, state }
    }

    pub fn cut(&self) {
        self.state.store(CUT, Ordering::SeqCst);
    }

    pub fn blackhole(&self) {
        self.state.store(BLACKHOLE, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.state.store(OPEN, Ordering::SeqCst);
    }
}

/// Makes `cfg` a replica of the fleet in `etcd_url` (short lease so that a dead replica leaves
/// within a test's patience).
pub fn replica(cfg: &mut Config, etcd_url: &str, id: &str) {
    cfg.registry.backend = Backend::Etcd;
    cfg.registry.etcd_endpoints = vec![etcd_url.to_string()];
    cfg.registry.prefix = "/byoc-test/".into();
    cfg.registry.lease_ttl = Duration::from_secs(3);
    cfg.registry.replica_id = Some(id.to_string());
}

/// Flags of a replica process (with `gateway_args`).
pub fn replica_flags<'a>(etcd_url: &'a str, id: &'a str) -> Vec<&'a str> {
    vec![
        "--registry-backend",
        "etcd",
        "--etcd-endpoints",
        etcd_url,
        "--registry-prefix",
        "/byoc-test/",
        "--registry-lease-ttl",
        "3s",
        "--replica-id",
        id,
    ]
}

/// The data dir of a test replica.
pub fn data_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).expect("data dir");
    d
}
