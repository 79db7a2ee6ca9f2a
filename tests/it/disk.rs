//! A full disk, for real: the gateway's data dir on a small tmpfs, filled to the last byte.
//! Mounting needs root (`.ci/run` requires it when run as root); elsewhere the test says it skipped.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// A tmpfs mounted on a temp dir, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte with a file that [`Tmpfs::free`] removes.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.filler()).expect("filler");
        let chunk = vec![0u8; 4096];
        // Bounded: a tmpfs of a few MiB fills in a few thousand chunks.
        for _ in 0..1_000_000 {
            if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
                return;
            }
        }
        panic!("the tmpfs never filled");
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove filler");
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(30)).finish()
}

async fn add(c: &awc::Client, gw: &Process, i: usize) -> Answer {
    let url = format!("http://127.0.0.2:{}", 20_000 + i);
    read(
        c.post(format!("{}/admin/orchestrators", gw.admin))
            .bearer_auth(TOKEN)
            .send_json(&json!({"url": url, "capabilities": []}))
            .await,
    )
    .await
}

async fn get(c: &awc::Client, url: &str) -> Answer {
    read(c.get(url).bearer_auth(TOKEN).send().await).await
}

fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array().into_iter().flatten().filter_map(|o| o["id"].as_str().map(str::to_string)).collect()
}

/// Runs the gateway expecting it to refuse to start; returns its exit code and stderr.
fn start_refused(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway started on a full disk (or hung)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[actix_web::test]
async fn a_full_disk_loses_no_acknowledged_write_and_writes_resume_when_space_returns() {
    let fs = match Tmpfs::mount("8m") {
        Ok(fs) => fs,
        Err(why) => return skip(Needs::Root, "full-disk test", &why),
    };
    let data = fs.path().to_str().expect("utf-8 path");
    let args = gateway_args(data, &[]);
    let c = client();
    let gw = Process::spawn(&args);
    let mut acked = BTreeSet::new();
    for i in 0..20 {
        let a = add(&c, &gw, i).await;
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
        acked.insert(a.json()["id"].as_str().expect("id").to_string());
    }

    // Full: the file system first, then what sled had room for in its open segment. Then
    // writes are refused with a clear error.
    fs.fill();
    let mut next = 20;
    let refused = loop {
        let a = add(&c, &gw, next).await;
        next += 1;
        if a.status != 201 {
            break a;
        }
        acked.insert(a.json()["id"].as_str().expect("id").to_string());
        assert!(next < 20_000, "the disk never refused a write");
    };
    let err = refused.error(503, "store-unavailable");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("full")), "{err}");
    // A backup can still be taken, and it holds every acknowledged change.
    let export = get(&c, &format!("{}/admin/store/export", gw.admin)).await;
    assert_eq!(export.status, 200, "{}", String::from_utf8_lossy(&export.body));
    assert_eq!(ids(&export.json()["orchestrators"]), acked);

    // Space back: the next write works, without a restart.
    fs.free();
    let a = add(&c, &gw, next).await;
    assert_eq!(a.status, 201, "writes resume once space returns: {}", String::from_utf8_lossy(&a.body));
    acked.insert(a.json()["id"].as_str().expect("id").to_string());
    let metrics = get(&c, &format!("{}/metrics", gw.admin)).await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(metrics.contains("byoc_gateway_store_reopens_total 1"), "{metrics}");

    // Full again, then a restart: the start is refused with the reason, and once space is
    // back the gateway starts with every acknowledged write.
    fs.fill();
    drop(gw);
    let (code, stderr) = start_refused(&args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("full"), "the refusal names the full disk: {stderr}");
    assert!(!stderr.contains("move"), "no advice to move an intact store aside: {stderr}");
    fs.free();
    let gw = Process::spawn(&args);
    let listed = get(&c, &format!("{}/admin/orchestrators", gw.admin)).await;
    assert_eq!(ids(&listed.json()), acked, "every acknowledged write survived the full disk");
    next += 1;
    assert_eq!(add(&c, &gw, next).await.status, 201);
}
