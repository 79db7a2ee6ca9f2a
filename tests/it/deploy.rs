//! The systemd unit in `deploy/systemd/` (issue 27): `systemd-analyze verify` accepts it with no
//! warning, `systemd-analyze security` rates its exposure 2.0 or less ("OK"), its user file
//! creates the service's user, and it has the hardening and the SIGHUP reload the production
//! guide relies on (the reload itself is tested in labels.rs and operator.rs).

use std::path::Path;
use std::process::Command;

use crate::prometheus::tool;
use crate::support::*;

#[test]
fn the_systemd_unit_verifies_is_hardened_and_reloads_with_sighup() {
    let Some(analyze) = tool("systemd-analyze", "systemd unit check", "systemd") else { return };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(repo.join("deploy/systemd/byoc-gateway.service")).expect("unit");
    for line in [
        "User=byoc-gateway",
        "StateDirectory=byoc-gateway",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/local/bin/byoc-gateway run --config /etc/byoc-gateway/gateway.toml --data-dir %S/byoc-gateway",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // `verify` checks that the command exists: the copy runs the binary this test built.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("byoc-gateway.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/byoc-gateway", &binary().display().to_string())).expect("write");
    let out = Command::new(&analyze).arg("verify").arg(&copy).output().expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It exits 0 over unknown keys and bad values, but names them on stderr.
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify ({}):\n{stderr}", out.status);
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure over 2.0:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Overall exposure level for byoc-gateway.service"), "{stdout}");

    let Some(sysusers) = tool("systemd-sysusers", "systemd user file check", "systemd") else { return };
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("etc")).expect("etc");
    let out = Command::new(sysusers)
        .arg(format!("--root={}", root.path().display()))
        .arg(repo.join("deploy/systemd/byoc-gateway.sysusers"))
        .output()
        .expect("systemd-sysusers");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    assert!(
        passwd.lines().any(|l| l.starts_with("byoc-gateway:") && l.contains(":/var/lib/byoc-gateway:")),
        "{passwd}"
    );
}
