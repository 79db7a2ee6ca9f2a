//! Signing: with a keystore the gateway signs the token credential and each job as go-livepeer
//! master does (V0), checked by recovering the signer with an independent implementation
//! (Python eth-account); without one it stays offchain. A bad key stops start-up with 78.

use std::process::Command;

use byoc_actors::protocol::header::encode_client_header;
use byoc_sim::{LastSeen, SimHandle};
use serde_json::json;

use crate::support::*;

/// The fixture key's address (eth-account `Account.from_key(0x4c08…2318).address`).
const ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
const ZERO: &str = "0x0000000000000000000000000000000000000000";

/// What the simulator last received, through its documented `GET /sim/last`.
async fn last_seen(gw: &TestGateway, sim: &SimHandle) -> LastSeen {
    let a = read(gw.client.get(format!("{}/sim/last", sim.url)).send().await).await;
    assert_eq!(a.status, 200);
    serde_json::from_slice(&a.body).expect("LastSeen JSON")
}

/// Recovers the signer of each (message, signature) pair the way go-livepeer's `VerifySig`
/// does: EIP-191 personal-sign over keccak256(message).
const RECOVER: &str = r#"
import json, sys
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
pairs = json.loads(sys.argv[1])
print(json.dumps([Account.recover_message(encode_defunct(primitive=keccak(text=m)), signature=s) for m, s in pairs]))
"#;

#[actix_web::test]
async fn a_keyed_gateway_signs_the_credential_and_each_job_as_go_livepeer_verifies() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"])], |cfg| {
        cfg.signer.keystore = Some(keystore_fixture("scrypt.json"));
        cfg.signer.password_file = Some(keystore_fixture("password.txt"));
    })
    .await;

    let header = encode_client_header(&json!({
        "id": "signed", "capability": "depth", "request": {"stream_id": "s"},
        "parameters": {"seed": 7}, "timeout_seconds": 10,
    }));
    let ans = read(
        gw.client
            .post(format!("{}/process/request/depth", gw.http))
            .insert_header(("Livepeer", header))
            .insert_header(("Content-Type", "application/json"))
            .send_body("{}")
            .await,
    )
    .await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);

    // The job went through, so a token probe preceded it: both are on record.
    let last = last_seen(&gw, &a).await;
    let cred = last.token_credential.expect("a token probe was received");
    let job = last.job.expect("a job was received");
    assert_eq!(cred.addr, ADDRESS, "the credential carries the EIP-55 address");
    assert_eq!(job.sender, ADDRESS);
    assert_eq!((job.request.as_str(), job.parameters.as_str()), ("{\"stream_id\":\"s\"}", "{\"seed\":7}"));
    for sig in [&cred.sig, &job.sig] {
        assert!(sig.len() == 132 && sig.starts_with("0x"), "0x + 130 hex: {sig}");
        assert!(sig[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "lowercase hex: {sig}");
        assert!(sig.ends_with("1b") || sig.ends_with("1c"), "v is 27 or 28: {sig}");
    }
    assert_ne!(cred.sig, job.sig);

    let Some(python) = python() else { return };
    let pairs = json!([[cred.addr, cred.sig], [format!("{}{}", job.request, job.parameters), job.sig]]);
    let out = run_python(&python, RECOVER, &[&pairs.to_string()]).await;
    let recovered: Vec<String> = serde_json::from_str(out.trim()).expect("python prints a JSON list");
    assert_eq!(recovered, [ADDRESS, ADDRESS], "eth-account recovers the configured address from both signatures");
}

#[actix_web::test]
async fn without_a_key_the_gateway_is_offchain_with_empty_signatures() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    let ans = gw.job("depth", "plain").await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);
    let last = last_seen(&gw, &a).await;
    let cred = last.token_credential.expect("token probe");
    let job = last.job.expect("job");
    assert_eq!((cred.addr.as_str(), cred.sig.as_str()), (ZERO, ""));
    assert_eq!((job.sender.as_str(), job.sig.as_str()), (ZERO, ""), "an empty sig, never a bare 0x");
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary()).args(args).output().expect("run binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_unlocks_the_key_and_names_its_address() {
    let ks = keystore_fixture("pbkdf2.json");
    let pw = keystore_fixture("password.txt");
    let (code, out, err) = run(&[
        "check-config",
        "--eth-keystore-path",
        ks.to_str().expect("utf-8"),
        "--eth-password",
        pw.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("signer=v0 address={ADDRESS}")), "{out}");
    let (_, out, _) = run(&["check-config"]);
    assert!(out.contains(&format!("signer=offchain address={ZERO}")), "{out}");
}

#[test]
fn a_bad_key_stops_start_up_with_78_before_anything_is_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not the password\n").expect("write");
    let ks = keystore_fixture("scrypt.json");
    let (ks, wrong, data_s) =
        (ks.to_str().expect("utf-8"), wrong.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    let base = ["--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir", data_s];

    let (code, out, err) = run(&[&base[..], &["--eth-keystore-path", ks, "--eth-password", wrong]].concat());
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("wrong password or corrupt keystore (MAC mismatch)"), "{err}");
    assert!(!err.contains("not the password"), "the password is never printed: {err}");
    assert!(!out.contains("ready"), "{out}");
    assert!(!data.exists(), "the store must not be created when the key cannot be unlocked");

    let (code, _, err) = run(&[&base[..], &["--eth-keystore-path", ks]].concat());
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("set both"), "{err}");

    let (code, _, err) = run(&["check-config", "--eth-keystore-path", ks, "--eth-password", wrong]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("MAC mismatch"), "{err}");
}
