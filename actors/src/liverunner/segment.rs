//! `Livepeer-Segment`: the segment credentials a live payment carries, as go-livepeer's
//! broadcaster builds them (`server/segment_rpc.go:genSegCreds`, `core/streamdata.go`): a
//! `net.SegData` for an empty segment of the session (manifest id = the challenge's auth
//! session id, sequence 0, hash = keccak256 of no bytes, no profiles), signed by the payer over
//! `manifestID || pad32(seq) || hash || profilesHex`, with the challenge's auth token; standard
//! base64 of its protobuf encoding. The orchestrator checks that the signature recovers to the
//! payment's sender, that the manifest id is the token's session id, and that the token is its
//! own and unexpired ([`verify`], which the simulator uses).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use prost::Message as _;
use sha3::{Digest as _, Keccak256};

use super::wire::{AuthToken, SegData};
use crate::protocol::signer::Signer;

/// What `SegTranscodingMetadata.Flatten()` signs: `manifest_id || pad32(seq) || hash ||
/// hex(profiles)` (no profiles here).
pub fn flatten(manifest_id: &[u8], seq: i64, hash: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(manifest_id.len() + 32 + hash.len());
    out.extend_from_slice(manifest_id);
    let mut seq32 = [0u8; 32];
    // go's big.Int.Bytes() of a non-negative sequence number, left-padded.
    seq32[24..].copy_from_slice(&seq.max(0).to_be_bytes());
    out.extend_from_slice(&seq32);
    out.extend_from_slice(hash);
    out
}

/// keccak256 of an empty segment (the hash a live payment's credentials carry).
pub fn empty_hash() -> Vec<u8> {
    Keccak256::digest([]).to_vec()
}

/// The `Livepeer-Segment` value for session `manifest_id` authenticated by `token`, signed
/// by `signer`; `None` for a signer that cannot pay.
pub fn seg_creds(manifest_id: &str, token: &AuthToken, signer: &dyn Signer) -> Option<String> {
    let hash = empty_hash();
    let sig = signer.sign_segment(&flatten(manifest_id.as_bytes(), 0, &hash))?;
    let seg = SegData {
        manifest_id: manifest_id.as_bytes().to_vec(),
        seq: 0,
        hash,
        profiles: b"invalid".to_vec(),
        sig: sig.to_vec(),
        duration: 0,
        auth_token: Some(token.clone()),
    };
    Some(STANDARD.encode(seg.encode_to_vec()))
}

/// Why segment credentials are refused (go-livepeer's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegRefused {
    /// Not base64 of a `net.SegData`.
    #[error("ErrSegEncoding")]
    Encoding,
    /// The signature does not recover to the payment's sender.
    #[error("ErrSegSig")]
    Signature,
    /// No auth token.
    #[error("missing auth token")]
    NoToken,
    /// The manifest id is not the auth token's session.
    #[error("mismatched manifest and auth token")]
    Manifest,
}

/// Decodes `header` and checks it was signed by `sender` and binds its manifest to its token's
/// session (the token's own validity is the orchestrator's: its HMAC and expiry).
pub fn verify(header: &str, sender: [u8; 20]) -> Result<SegData, SegRefused> {
    let bytes = STANDARD.decode(header.trim()).map_err(|_| SegRefused::Encoding)?;
    let seg = SegData::decode(bytes.as_slice()).map_err(|_| SegRefused::Encoding)?;
    let digest: [u8; 32] = Keccak256::digest(flatten(&seg.manifest_id, seg.seq, &seg.hash)).into();
    if crate::payment::verify::recover_signer(&digest, &seg.sig) != Some(sender) {
        return Err(SegRefused::Signature);
    }
    let token = seg.auth_token.as_ref().ok_or(SegRefused::NoToken)?;
    if seg.manifest_id != token.session_id.as_bytes() {
        return Err(SegRefused::Manifest);
    }
    Ok(seg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::signer::v0::V0;

    #[test]
    fn credentials_verify_against_their_signer_and_tampering_is_caught() {
        let key = V0::from_secret(&[7u8; 32]).expect("key");
        let sender = key.payer().expect("keyed");
        let token = AuthToken { token: vec![1, 2, 3], session_id: "session_abc".into(), expiration: 1 << 40 };
        let creds = seg_creds("session_abc", &token, &key).expect("signed");
        let seg = verify(&creds, sender).expect("verifies");
        assert_eq!(seg.manifest_id, b"session_abc");
        assert_eq!(seg.hash, Keccak256::digest([]).to_vec());
        assert_eq!(verify(&creds, [9; 20]), Err(SegRefused::Signature));
        let other = seg_creds("session_xyz", &token, &key).expect("signed");
        assert_eq!(verify(&other, sender), Err(SegRefused::Manifest));
        assert_eq!(verify("%%%", sender), Err(SegRefused::Encoding));
        // Offchain: no signature, no credentials.
        assert_eq!(seg_creds("s", &token, &crate::protocol::signer::Offchain), None);
    }

    #[test]
    fn flatten_is_manifest_then_the_padded_sequence_then_the_hash() {
        let f = flatten(b"ab", 1, &[7; 32]);
        assert_eq!(f.len(), 2 + 32 + 32);
        assert_eq!(&f[..2], b"ab");
        assert_eq!(f[2 + 31], 1);
        assert!(f[2..2 + 31].iter().all(|b| *b == 0));
        assert_eq!(&f[34..], &[7; 32]);
    }
}
