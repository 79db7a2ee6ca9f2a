//! The "V0" scheme of go-livepeer master: EIP-191 personal-sign of the keccak256 hash of the
//! message (`eth/accountmanager.go` `Sign`), verified by orchestrators with `VerifySig`.
//!
//! For a message `m` the signed digest is
//! `keccak256("\x19Ethereum Signed Message:\n32" ++ keccak256(m))`; the signature is 65 bytes
//! `r || s || v` with low `s` and `v` in {27, 28}, sent as `0x` + 130 lowercase hex.

use k256::ecdsa::{SigningKey, VerifyingKey};
use sha3::{Digest as _, Keccak256};

use super::keystore::KeystoreError;
use super::Signer;

/// A V0 signer holding an unlocked private key.
///
/// Its `Debug` shows the address only, so the key cannot end up in a log by accident.
pub(crate) struct V0 {
    /// The key (zeroed on drop by k256).
    key: SigningKey,
    /// The key's address, computed once: its 20 bytes (a ticket's sender) and their EIP-55
    /// checksum form.
    address_bytes: [u8; 20],
    address: String,
    /// Signature over `address` (the token credential), computed once.
    address_signature: String,
}

impl std::fmt::Debug for V0 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V0").field("address", &self.address).finish_non_exhaustive()
    }
}

impl V0 {
    /// A signer for the 32-byte secp256k1 private key `secret`.
    pub(crate) fn from_secret(secret: &[u8]) -> Result<Self, KeystoreError> {
        let key = SigningKey::from_slice(secret).map_err(|_| KeystoreError::InvalidKey)?;
        let bytes = address_bytes(key.verifying_key());
        let address = checksum_address(&bytes);
        let mut v0 = Self { key, address_bytes: bytes, address, address_signature: String::new() };
        v0.address_signature = v0.sign(v0.address.as_bytes());
        Ok(v0)
    }

    /// The 65-byte signature `r || s || v` of `msg` (low `s`, `v` in {27, 28}).
    pub(crate) fn sign_bytes(&self, msg: &[u8]) -> [u8; 65] {
        let digest = personal_digest(msg);
        let (sig, recovery) = self.key.sign_prehash_recoverable(&digest);
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        // Ethereum's v: 27 + parity of R's y. k256 normalises s to the low half and flips the
        // recovery id to match, so the pair stays valid for ecrecover. (An x-reduced R, which
        // Ethereum cannot express, has probability ~2^-128.)
        out[64] = 27 + u8::from(recovery.is_y_odd());
        out
    }
}

impl Signer for V0 {
    fn address(&self) -> &str {
        &self.address
    }

    fn sign(&self, msg: &[u8]) -> String {
        format!("0x{}", hex::encode(self.sign_bytes(msg)))
    }

    fn scheme(&self) -> &'static str {
        "v0"
    }

    fn address_signature(&self) -> String {
        self.address_signature.clone()
    }

    fn sign_ticket(&self, flatten: &[u8]) -> Option<[u8; 65]> {
        Some(self.sign_bytes(flatten))
    }

    fn payer(&self) -> Option<[u8; 20]> {
        Some(self.address_bytes)
    }
}

/// `keccak256("\x19Ethereum Signed Message:\n32" ++ keccak256(msg))`: go-livepeer signs the
/// 32-byte hash of the message, not the message itself, hence the fixed length 32.
pub(crate) fn personal_digest(msg: &[u8]) -> [u8; 32] {
    personal_digest_of_hash(&Keccak256::digest(msg))
}

/// EIP-191's text hash of a 32-byte hash: `keccak256("\x19Ethereum Signed Message:\n32" || hash)`
/// (go-ethereum's `TextHash`). A ticket's signature is over the text hash of its ticket hash.
pub(crate) fn personal_digest_of_hash(hash: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n32");
    h.update(hash);
    h.finalize().into()
}

/// The 20-byte Ethereum address of a public key: the last 20 bytes of the keccak256 of the
/// uncompressed point without its `0x04` prefix.
pub(crate) fn address_bytes(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_sec1_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    out
}

/// EIP-55 mixed-case checksum form of `addr` (`0x` + 40 hex): a hex letter is upper case when
/// the matching nibble of keccak256(lowercase hex) is 8 or more.
pub(crate) fn checksum_address(addr: &[u8; 20]) -> String {
    let lower = hex::encode(addr);
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if nibble >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}
