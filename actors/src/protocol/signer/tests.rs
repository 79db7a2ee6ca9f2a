//! Signer tests: known answers computed independently with Python eth-account 0.14
//! (`Account.sign_message(encode_defunct(primitive=keccak(msg)), key)`), EIP-55 vectors from
//! the EIP itself, keystore fixtures written by `Account.encrypt` with tiny KDF costs.

use std::path::{Path, PathBuf};

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};

use super::keystore::{decrypt, KeystoreError};
use super::v0::{checksum_address, personal_digest, V0};
use super::*;

const KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
const PASSWORD: &str = "correct horse battery staple";

fn v0() -> V0 {
    V0::from_secret(&hex::decode(KEY).expect("hex")).expect("valid key")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keystore").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

#[test]
fn v0_matches_eth_account_known_answers() {
    let s = v0();
    assert_eq!(s.address(), ADDRESS);
    assert_eq!(s.payer().map(|b| format!("0x{}", hex::encode(b))), Some(ADDRESS.to_lowercase()), "pays from it");
    assert_eq!(Offchain.payer(), None, "no key, no payment");
    assert_eq!(s.scheme(), "v0");
    // The token credential: the checksummed address string, signed.
    assert_eq!(
        s.sign(ADDRESS.as_bytes()),
        "0x662f6ce6e23e70c7db9bdcc7b0d91bdf58d8743ba347ab0b9aa060154644c55122dd6afcc20a6cba9cab1d565a6b1dc36be9a9314e0317b943f8b0f1a726e2971b"
    );
    // A job: request + parameters.
    assert_eq!(
        s.sign(b"{\"stream_id\":\"s\"}{}"),
        "0xef5daee7ef8d450492fc1430f048aea60c608090faba299bf0b3fc403d943fd757cd63f589191af8e6c841c57710dbc8641001beee54a7be685cfcec0825ed501c"
    );
    // The same job signature through `sign_job`, which takes the two fields apart.
    assert_eq!(
        s.sign_job("{\"stream_id\":\"s\"}", "{}"),
        "0xef5daee7ef8d450492fc1430f048aea60c608090faba299bf0b3fc403d943fd757cd63f589191af8e6c841c57710dbc8641001beee54a7be685cfcec0825ed501c"
    );
    assert_eq!(
        s.sign(b""),
        "0x4eff6dcb03d6872bce89018a566540c311c96dd59a1feefaa4c90827c4c6edd24c79eae46643e16b54ea20075317b031c89e5740df5469e42e1b95a93ca036ec1b"
    );
}

#[test]
fn signatures_are_low_s_with_ethereum_v_and_recover_to_the_address() {
    // secp256k1 order / 2, big-endian: s must not exceed it (EIP-2; go-livepeer's ecrecover
    // refuses high s).
    let half_n = hex::decode("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0").expect("hex");
    let s = v0();
    let mut seen_v = [false; 2];
    for i in 0..64u32 {
        let msg = format!("{{\"stream_id\":\"{i}\"}}{{}}");
        let sig = s.sign_bytes(msg.as_bytes());
        assert!(sig[32..64] <= half_n[..], "high s for message {i}");
        assert!(matches!(sig[64], 27 | 28), "v = {}", sig[64]);
        seen_v[usize::from(sig[64] - 27)] = true;

        let parsed = Signature::from_slice(&sig[..64]).expect("r||s");
        let recid = RecoveryId::from_byte(sig[64] - 27).expect("recovery id");
        let key =
            VerifyingKey::recover_from_prehash(&personal_digest(msg.as_bytes()), &parsed, recid).expect("recovers");
        assert_eq!(checksum_address(&v0::address_bytes(&key)), ADDRESS);
        let text = s.sign(msg.as_bytes());
        assert!(text.starts_with("0x") && text.len() == 132, "{text}");
        assert_eq!(text, text.to_ascii_lowercase());
    }
    assert_eq!(seen_v, [true, true], "both parities of v occur over 64 signatures");
}

#[test]
fn eip55_vectors() {
    for addr in [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ] {
        let bytes: [u8; 20] = hex::decode(&addr[2..]).expect("hex").try_into().expect("20 bytes");
        assert_eq!(checksum_address(&bytes), addr);
    }
}

#[test]
fn debug_never_shows_the_key() {
    let shown = format!("{:?}", v0());
    assert!(shown.contains(ADDRESS), "{shown}");
    assert!(!shown.to_ascii_lowercase().contains(&KEY[..16]), "{shown}");
    let d = decrypt(&read_fixture("scrypt.json"), PASSWORD.as_bytes()).expect("decrypts");
    assert!(!format!("{d:?}").contains(&KEY[..16]));
}

#[test]
fn keystores_decrypt_with_scrypt_and_pbkdf2() {
    for name in ["scrypt.json", "pbkdf2.json"] {
        let d = decrypt(&read_fixture(name), PASSWORD.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(hex::encode(&*d.secret), KEY, "{name}");
        assert_eq!(d.address.as_deref(), Some(&ADDRESS[2..].to_ascii_lowercase()[..]));
        let signer = load(Scheme::V0, &fixture(name), &fixture("password.txt")).expect("loads");
        assert_eq!(signer.address(), ADDRESS);
        assert_eq!(signer.scheme(), "v0");
    }
}

#[test]
fn wrong_password_is_a_mac_mismatch_with_a_clear_message() {
    let err = decrypt(&read_fixture("scrypt.json"), b"correct horse battery stapler").expect_err("wrong password");
    assert!(matches!(err, KeystoreError::MacMismatch), "{err:?}");
    assert_eq!(err.to_string(), "wrong password or corrupt keystore (MAC mismatch)");

    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "nope\n").expect("write");
    let err = load(Scheme::V0, &fixture("pbkdf2.json"), &pw).expect_err("wrong password");
    let msg = err.to_string();
    assert!(msg.contains("pbkdf2.json") && msg.contains("MAC mismatch"), "{msg}");
    assert!(!msg.contains("nope"), "the password is never echoed: {msg}");
}

#[test]
fn password_file_loses_one_trailing_newline_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    for (contents, expected) in [("pw\n", "pw"), ("pw\r\n", "pw"), ("pw", "pw"), ("pw\n\n", "pw\n"), (" pw \n", " pw ")]
    {
        std::fs::write(&pw, contents).expect("write");
        assert_eq!(&**read_password_file(&pw).expect("reads"), expected.as_bytes(), "{contents:?}");
    }
    for empty in ["", "\n", "\r\n"] {
        std::fs::write(&pw, empty).expect("write");
        assert!(matches!(read_password_file(&pw), Err(SignerError::EmptyPassword { .. })), "{empty:?}");
    }
    // A literal password where a path belongs is not echoed back.
    let err = read_password_file(Path::new("hunter2")).expect_err("missing");
    assert!(err.to_string().contains("cannot read the password file"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn malformed_keystores_are_refused_with_the_reason() {
    let good: serde_json::Value = serde_json::from_slice(&read_fixture("scrypt.json")).expect("json");
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        edit(&mut v);
        decrypt(&serde_json::to_vec(&v).expect("json"), PASSWORD.as_bytes()).expect_err("refused")
    };
    assert!(matches!(decrypt(b"not json", PASSWORD.as_bytes()), Err(KeystoreError::NotKeystore(_))));
    assert!(matches!(decrypt(b"{\"version\":3}", PASSWORD.as_bytes()), Err(KeystoreError::NotKeystore(_))));
    assert!(matches!(with(&|v| v["version"] = 1.into()), KeystoreError::UnsupportedVersion(1)));
    assert!(
        matches!(with(&|v| v["crypto"]["kdf"] = "argon2".into()), KeystoreError::UnsupportedKdf(k) if k == "argon2")
    );
    assert!(matches!(with(&|v| v["crypto"]["cipher"] = "aes-256-gcm".into()), KeystoreError::UnsupportedCipher(_)));
    assert!(matches!(with(&|v| v["crypto"]["kdfparams"]["n"] = 3.into()), KeystoreError::KdfParams(_)));
    assert!(
        matches!(with(&|v| v["crypto"]["kdfparams"]["n"] = (1u64 << 30).into()), KeystoreError::KdfParams(m) if m.contains("MiB"))
    );
    assert!(matches!(with(&|v| v["crypto"]["kdfparams"]["dklen"] = 16.into()), KeystoreError::KdfParams(_)));
    // A flipped ciphertext byte is caught by the MAC, never decrypted into another key.
    let altered = with(&|v| {
        let c = v["crypto"]["ciphertext"].as_str().expect("str");
        v["crypto"]["ciphertext"] = format!("00{}", &c[2..]).into();
    });
    assert!(matches!(altered, KeystoreError::MacMismatch));
    // Old geth files spell the section "Crypto".
    let mut old = good.clone();
    let crypto = old["crypto"].take();
    old.as_object_mut().expect("object").remove("crypto");
    old["Crypto"] = crypto;
    assert!(decrypt(&serde_json::to_vec(&old).expect("json"), PASSWORD.as_bytes()).is_ok());
}

#[test]
fn an_address_field_that_is_not_the_keys_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut v: serde_json::Value = serde_json::from_slice(&read_fixture("scrypt.json")).expect("json");
    v["address"] = "0000000000000000000000000000000000000001".into();
    let ks = dir.path().join("ks.json");
    std::fs::write(&ks, serde_json::to_vec(&v).expect("json")).expect("write");
    let err = load(Scheme::V0, &ks, &fixture("password.txt")).expect_err("mismatch");
    assert!(matches!(err, SignerError::AddressMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(ADDRESS), "{err}");
    // Without an address field the derived one is used.
    v.as_object_mut().expect("object").remove("address");
    std::fs::write(&ks, serde_json::to_vec(&v).expect("json")).expect("write");
    assert_eq!(load(Scheme::V0, &ks, &fixture("password.txt")).expect("loads").address(), ADDRESS);
    let err = load(Scheme::V0, &dir.path().join("missing.json"), &fixture("password.txt")).expect_err("missing");
    assert!(err.to_string().contains("cannot read keystore file"), "{err}");
}

#[test]
fn only_v0_is_a_known_scheme() {
    assert_eq!("v0".parse::<Scheme>(), Ok(Scheme::V0));
    let v1 = "v1".parse::<Scheme>().expect_err("not implemented");
    assert!(v1.contains("not") && v1.contains("v0"), "{v1}");
    assert!("V0 ".parse::<Scheme>().is_err());
}

#[test]
fn offchain_stays_empty() {
    assert_eq!(Offchain.sign(b"anything"), "");
    assert_eq!(Offchain.sign_job("{\"a\":1}", "{}"), "");
    assert_eq!(Offchain.address(), "0x0000000000000000000000000000000000000000");
}
