//! The command line: check-config, invalid configuration exits before binding, flag/env
//! precedence.

use std::process::Command;

use crate::support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(binary()).args(args).envs(env.iter().copied()).output().expect("run binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example_and_rejects_bad_files() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml");
    let (code, out, _) = run(&["check-config", "--config", example], &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("configuration OK"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "http_addr = \"127.0.0.1:1\"\n[routing]\ntoken_refesh = \"1s\"\n").expect("write");
    let (code, _, err) = run(&["check-config", "--config", bad.to_str().expect("path")], &[]);
    assert_eq!(code, Some(78));
    assert!(err.contains("token_refesh"), "the message names the bad key: {err}");

    let (code, _, err) = run(&["check-config", "--config", "/nonexistent/gateway.toml"], &[]);
    assert_eq!(code, Some(78));
    assert!(err.contains("cannot read config file"), "{err}");
}

#[test]
fn invalid_config_exits_before_binding_or_opening_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (code, _, err) = run(
        &["--admin-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0", "--data-dir", data.to_str().expect("path")],
        &[("BYOC_GATEWAY_ADMIN_TOKEN", "")],
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("admin"), "{err}");
    assert!(!data.exists(), "the store must not be created for an invalid config");
    let (code, _, err) = run(&["run", "--orch-addr", "ftp://x:1", "--data-dir", data.to_str().expect("path")], &[]);
    assert_eq!(code, Some(78));
    assert!(err.contains("ftp"), "{err}");
    assert!(!data.exists());
}

#[test]
fn flags_beat_env_which_beats_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("g.toml");
    std::fs::write(
        &file,
        "http_addr = \"127.0.0.1:1111\"\nadmin_addr = \"127.0.0.1:2222\"\ndata_dir = \"/from/file\"\n",
    )
    .expect("write");
    let f = file.to_str().expect("path");
    let (code, out, err) = run(&["check-config", "--config", f], &[("BYOC_GATEWAY_HTTP_ADDR", "127.0.0.1:3333")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("http=127.0.0.1:3333")
            && out.contains("admin=127.0.0.1:2222")
            && out.contains("data_dir=/from/file"),
        "{out}"
    );
    let (_, out, _) = run(
        &["check-config", "--config", f, "--http-addr", "127.0.0.1:4444"],
        &[("BYOC_GATEWAY_HTTP_ADDR", "127.0.0.1:3333")],
    );
    assert!(out.contains("http=127.0.0.1:4444"), "{out}");
    let (_, out, _) = run(&["check-config", "--orch-addr", "a:1,b:2"], &[]);
    assert!(out.contains("orchestrators=2"), "{out}");
}

#[test]
fn a_damaged_store_stops_the_gateway_before_it_binds_with_recovery_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let store = data.join("store-v1");
    std::fs::create_dir_all(&store).expect("dir");
    // What a failing disk leaves behind: files of the right names with garbage in them.
    for name in ["conf", "db"] {
        std::fs::write(store.join(name), vec![0xA5u8; 4096]).expect("scribble");
    }
    let (code, out, err) = run(
        &["--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir", data.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot be opened") && err.contains("Recovery"), "{err}");
    assert!(!out.contains("ready"), "it never got as far as serving: {out}");
}

#[test]
fn a_port_in_use_fails_the_start_cleanly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin = format!("127.0.0.1:{port}");
    let (code, _, err) = run(
        &["--http-addr", "127.0.0.1:0", "--admin-addr", &admin, "--data-dir", data.to_str().expect("path")],
        &[("RUST_BACKTRACE", "0")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot bind admin_addr"), "the message names the address: {err}");
    assert!(!err.contains("panicked"), "no panic on the way out: {err}");
}

#[test]
fn an_unknown_byoc_gateway_environment_variable_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (code, _, err) = run(
        &["check-config", "--data-dir", data.to_str().expect("path")],
        &[("BYOC_GATEWAY_HTTP_ADRR", "127.0.0.1:1")],
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("BYOC_GATEWAY_HTTP_ADRR") && err.contains("BYOC_GATEWAY_HTTP_ADDR"),
        "names it and the known ones: {err}"
    );
    let (code, _, err) = run(&["check-config"], &[("BYOC_GATEWAY_HTTP_ADDR", "127.0.0.1:0")]);
    assert_eq!(code, Some(0), "{err}");
}

#[actix_web::test]
async fn the_listen_backlog_is_the_configured_one() {
    let gw = gateway_with(&[], |c| c.limits.listen_backlog = 777).await;
    let port = gw.http.rsplit(':').next().expect("port").to_string();
    let Ok(out) = Command::new("ss").args(["-ltnH", &format!("sport = :{port}")]).output() else {
        return skip(Needs::Tool, "listen backlog check", "`ss` (iproute2) is not installed");
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // LISTEN lines: State Recv-Q Send-Q(backlog) Local Peer
    let backlog: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(backlog, ["777"], "{text}");
}

#[test]
fn small_things_a_new_operator_trips_over() {
    // A host name that resolves is a listen address.
    let (code, out, err) = run(&["check-config", "--http-addr", "localhost:9935"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("http=127.0.0.1:9935") || out.contains("http=[::1]:9935"), "{out}");
    let (code, _, err) = run(&["check-config", "--http-addr", "no-such-host.invalid:9935"], &[]);
    assert_eq!(code, Some(78));
    assert!(err.contains("http_addr") && err.contains("resolves"), "{err}");

    // The simulator refuses values no orchestrator could have.
    let (code, _, err) = run(&["sim", "--addr", "127.0.0.1:0", "--error-rate", "2"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("error_rate must be between 0 and 1"), "{err}");
    let (code, _, err) = run(&["sim", "--addr", "127.0.0.1:0", "--capability", "Bad Cap"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("Bad Cap"), "{err}");

    // An import that is refused says so, without first announcing that it is importing.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("export.json");
    std::fs::write(&file, r#"{"format":"something-else","schema_version":2}"#).expect("write");
    let data = dir.path().join("data");
    let (code, out, err) =
        run(&["store", "import", file.to_str().expect("path"), "--data-dir", data.to_str().expect("path")], &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(!out.contains("importing"), "{out}");
}

#[test]
fn the_demo_tells_its_story_every_time() {
    let (code, out, err) =
        run(&["demo", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--exit", "--jobs", "24"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let line = |prefix: &str| out.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_default().to_string();
    // 'broken' is tripped by the jobs pinned to it, and its out-of-memory answer is counted.
    let broken = line("broken  image-to-image");
    assert!(broken.contains("breaker=open") && broken.contains("routable=false"), "{out}");
    assert!(line("broken  depth").contains("oom=1"), "{out}");
    // 'slow' answers only the jobs that keep it measured.
    let slow: u32 = line("slow    image-to-image")
        .split("ok=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("slow's ok count");
    assert!(slow <= 4, "slow answered {slow} of 24: {out}");
    assert!(out.contains("Status page (open it in a browser): http://127.0.0.1:"), "{out}");
    assert!(out.contains("/admin/ui#token=demo-token"), "{out}");
    assert!(!err.contains("ERROR"), "the story is not drowned in logs: {err}");
}
