//! Decrypting an Ethereum keystore v3 file (the "UTC--…" JSON that geth, go-livepeer's
//! `-ethKeystorePath` and eth-account write) into the 32-byte secp256k1 private key.
//!
//! Supported, as geth supports them: key derivation `scrypt` or `pbkdf2` (PRF `hmac-sha256`),
//! cipher `aes-128-ctr`. The MAC, `keccak256(derived_key[16..32] ++ ciphertext)`, is checked
//! before anything is decrypted, so a wrong password is reported as such and never yields a
//! garbage key. Secret buffers are zeroed when dropped.

use aes::cipher::{KeyIvInit as _, StreamCipher as _};
use serde::Deserialize;
use sha3::{Digest as _, Keccak256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Why a keystore could not be decrypted. Messages never contain the password or key.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Not JSON, or JSON without the v3 fields.
    #[error("not a keystore v3 JSON file: {0}")]
    NotKeystore(String),
    /// A version other than 3.
    #[error("keystore version {0} is not supported (only version 3)")]
    UnsupportedVersion(u64),
    /// A key derivation function other than scrypt and pbkdf2.
    #[error("unsupported key derivation function '{0}' (scrypt or pbkdf2 expected)")]
    UnsupportedKdf(String),
    /// A cipher other than aes-128-ctr.
    #[error("unsupported cipher '{0}' (aes-128-ctr expected)")]
    UnsupportedCipher(String),
    /// KDF parameters that are malformed or out of the supported range.
    #[error("invalid key derivation parameters: {0}")]
    KdfParams(String),
    /// The MAC does not match: the password is wrong, or the file was altered.
    #[error("wrong password or corrupt keystore (MAC mismatch)")]
    MacMismatch,
    /// The decrypted bytes are not a valid secp256k1 private key.
    #[error("the decrypted key is not a valid secp256k1 private key")]
    InvalidKey,
}

/// Largest scrypt working memory accepted (128 · r · n bytes). geth's standard parameters
/// (n = 2^18, r = 8) need 256 MiB; the bound refuses a file that would exhaust memory.
const MAX_SCRYPT_MEMORY: u64 = 1 << 30;

/// Largest PBKDF2 iteration count accepted, so a hostile file cannot stall start-up for hours.
const MAX_PBKDF2_ROUNDS: u32 = 100_000_000;

/// The fields of a keystore v3 file that decryption needs.
#[derive(Debug, Deserialize)]
struct KeyFile {
    /// Hex address without `0x` (optional: some tools omit it).
    #[serde(default)]
    address: Option<String>,
    /// geth writes `crypto`; very old files wrote `Crypto` (Go's JSON decoding accepts both).
    #[serde(alias = "Crypto")]
    crypto: Crypto,
    version: u64,
}

#[derive(Debug, Deserialize)]
struct Crypto {
    cipher: String,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: String,
    kdfparams: serde_json::Value,
    mac: String,
}

#[derive(Debug, Deserialize)]
struct CipherParams {
    iv: String,
}

#[derive(Debug, Deserialize)]
struct ScryptParams {
    dklen: usize,
    n: u64,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Debug, Deserialize)]
struct Pbkdf2Params {
    dklen: usize,
    c: u32,
    prf: String,
    salt: String,
}

/// A decrypted keystore: the private key and the address the file claims, if any.
pub(crate) struct Decrypted {
    /// The 32-byte private key (zeroed on drop).
    pub(crate) secret: Zeroizing<Vec<u8>>,
    /// The `address` field of the file, lowercase hex without `0x`.
    pub(crate) address: Option<String>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted").field("secret", &"<redacted>").field("address", &self.address).finish()
    }
}

fn unhex(field: &str, value: &str) -> Result<Vec<u8>, KeystoreError> {
    let value = value.strip_prefix("0x").unwrap_or(value);
    hex::decode(value).map_err(|e| KeystoreError::NotKeystore(format!("{field} is not hex: {e}")))
}

/// Decrypts keystore v3 `json` with `password`.
pub(crate) fn decrypt(json: &[u8], password: &[u8]) -> Result<Decrypted, KeystoreError> {
    let file: KeyFile = serde_json::from_slice(json).map_err(|e| KeystoreError::NotKeystore(e.to_string()))?;
    if file.version != 3 {
        return Err(KeystoreError::UnsupportedVersion(file.version));
    }
    let c = &file.crypto;
    if c.cipher != "aes-128-ctr" {
        return Err(KeystoreError::UnsupportedCipher(c.cipher.clone()));
    }
    let derived = derive_key(&c.kdf, &c.kdfparams, password)?;
    let ciphertext = unhex("ciphertext", &c.ciphertext)?;
    let mac = unhex("mac", &c.mac)?;
    let iv = unhex("cipherparams.iv", &c.cipherparams.iv)?;
    if iv.len() != 16 {
        return Err(KeystoreError::NotKeystore(format!("cipherparams.iv is {} bytes, not 16", iv.len())));
    }

    let mut h = Keccak256::new();
    h.update(&derived[16..32]);
    h.update(&ciphertext);
    // Constant time, out of habit: it costs nothing here.
    if !bool::from(h.finalize().as_slice().ct_eq(&mac)) {
        return Err(KeystoreError::MacMismatch);
    }

    let mut secret = Zeroizing::new(ciphertext);
    let mut cipher = ctr::Ctr128BE::<aes::Aes128>::new_from_slices(&derived[..16], &iv)
        .map_err(|_| KeystoreError::NotKeystore("bad AES key or IV length".into()))?;
    cipher.apply_keystream(&mut secret);
    if secret.len() != 32 {
        return Err(KeystoreError::InvalidKey);
    }
    let address = file.address.map(|a| a.trim_start_matches("0x").to_ascii_lowercase());
    Ok(Decrypted { secret, address })
}

/// Runs the file's KDF; returns at least 32 bytes (AES key, then MAC key).
fn derive_key(kdf: &str, params: &serde_json::Value, password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let bad = |e: serde_json::Error| KeystoreError::KdfParams(format!("{kdf}: {e}"));
    match kdf {
        "scrypt" => {
            let p: ScryptParams = serde_json::from_value(params.clone()).map_err(bad)?;
            check_dklen(p.dklen)?;
            if p.n < 2 || !p.n.is_power_of_two() {
                return Err(KeystoreError::KdfParams(format!("scrypt n = {} is not a power of two above 1", p.n)));
            }
            let memory = 128u64.saturating_mul(u64::from(p.r)).saturating_mul(p.n);
            if memory > MAX_SCRYPT_MEMORY {
                return Err(KeystoreError::KdfParams(format!(
                    "scrypt n = {}, r = {} needs {} MiB, more than the {} MiB accepted",
                    p.n,
                    p.r,
                    memory >> 20,
                    MAX_SCRYPT_MEMORY >> 20
                )));
            }
            let log_n = p.n.trailing_zeros() as u8;
            let params = scrypt::Params::new(log_n, p.r, p.p)
                .map_err(|e| KeystoreError::KdfParams(format!("scrypt n/r/p: {e}")))?;
            let salt = unhex("kdfparams.salt", &p.salt)?;
            let mut out = Zeroizing::new(vec![0u8; p.dklen]);
            scrypt::scrypt(password, &salt, &params, &mut out)
                .map_err(|e| KeystoreError::KdfParams(format!("scrypt: {e}")))?;
            Ok(out)
        }
        "pbkdf2" => {
            let p: Pbkdf2Params = serde_json::from_value(params.clone()).map_err(bad)?;
            check_dklen(p.dklen)?;
            if p.prf != "hmac-sha256" {
                return Err(KeystoreError::KdfParams(format!("pbkdf2 prf '{}' (hmac-sha256 expected)", p.prf)));
            }
            if p.c == 0 || p.c > MAX_PBKDF2_ROUNDS {
                return Err(KeystoreError::KdfParams(format!("pbkdf2 c = {} is out of range", p.c)));
            }
            let salt = unhex("kdfparams.salt", &p.salt)?;
            let mut out = Zeroizing::new(vec![0u8; p.dklen]);
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &salt, p.c, &mut out);
            Ok(out)
        }
        other => Err(KeystoreError::UnsupportedKdf(other.to_string())),
    }
}

/// The derived key is split into an AES-128 key and a 16-byte MAC key: 32 bytes are needed.
/// geth always writes 32; larger values are accepted (the extra bytes are unused).
fn check_dklen(dklen: usize) -> Result<(), KeystoreError> {
    if (32..=64).contains(&dklen) {
        Ok(())
    } else {
        Err(KeystoreError::KdfParams(format!("dklen = {dklen} (32 expected)")))
    }
}
