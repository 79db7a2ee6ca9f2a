//! Tickets: the parameters an orchestrator issues in its token (kept byte for byte, since the
//! orchestrator binds them into its `recipientRand`), the ticket a gateway signs from them, its
//! hash (`pm/ticket.go:Hash`, the TicketBroker's layout) and expected value.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use num_bigint::BigUint;
use serde::{Deserialize, Deserializer};
use sha3::{Digest, Keccak256};

/// Bytes that arrive as standard base64 in the token JSON (Go's encoding of `[]byte`).
fn b64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom)
}

/// The round a ticket's parameters were created in (`TicketExpirationParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ExpirationParams {
    /// The round number.
    #[serde(default)]
    pub creation_round: i64,
    /// The L1 block hash of that round (32 bytes, or empty).
    #[serde(default, deserialize_with = "b64")]
    pub creation_round_block_hash: Vec<u8>,
}

impl ExpirationParams {
    /// Whether these are the zero params (then the hash leaves them out).
    pub fn is_zero(&self) -> bool {
        self.creation_round == 0 && self.creation_round_block_hash.iter().all(|b| *b == 0)
    }
}

/// A token's `ticket_params`, as issued: every field is echoed to the orchestrator exactly, since
/// its `recipientRand` HMAC covers them. Numbers are minimal big-endian bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TicketParams {
    /// The orchestrator's address (20 bytes).
    #[serde(default, deserialize_with = "b64")]
    pub recipient: Vec<u8>,
    /// Face value in wei.
    #[serde(default, deserialize_with = "b64")]
    pub face_value: Vec<u8>,
    /// Winning probability out of 2^256 - 1.
    #[serde(default, deserialize_with = "b64")]
    pub win_prob: Vec<u8>,
    /// keccak256 of the orchestrator's secret `recipientRand` (32 bytes): it keys the nonces.
    #[serde(default, deserialize_with = "b64")]
    pub recipient_rand_hash: Vec<u8>,
    /// The orchestrator's seed for `recipientRand`.
    #[serde(default, deserialize_with = "b64")]
    pub seed: Vec<u8>,
    /// The L1 block after which these params are void.
    #[serde(default, deserialize_with = "b64")]
    pub expiration_block: Vec<u8>,
    /// The round they were created in.
    #[serde(default)]
    pub expiration_params: Option<ExpirationParams>,
}

impl TicketParams {
    /// Expected value of one ticket in wei: `face_value x win_prob / (2^256 - 1)`.
    pub(crate) fn ev(&self) -> f64 {
        let max = (BigUint::from(1u8) << 256u32) - 1u8;
        let product = BigUint::from_bytes_be(&self.face_value) * BigUint::from_bytes_be(&self.win_prob);
        // Scaled by 2^64 before dividing so the fraction survives the integer division.
        let scaled = (product << 64u32) / max;
        scaled.to_string().parse::<f64>().unwrap_or(0.0) / 2f64.powi(64)
    }

    /// The ticket with nonce `sender_nonce` that `sender` signs for these params.
    pub(crate) fn ticket(&self, sender: [u8; 20], sender_nonce: u32) -> Ticket<'_> {
        Ticket { params: self, sender, sender_nonce }
    }
}

/// One ticket: the params, the sender and its nonce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket<'a> {
    /// The params it was drawn from.
    pub(crate) params: &'a TicketParams,
    /// The gateway's address.
    pub(crate) sender: [u8; 20],
    /// Its nonce within the params' `recipient_rand_hash`.
    pub(crate) sender_nonce: u32,
}

/// `bytes` right-aligned in `n` bytes (left-padded with zeros; truncated on the left if longer).
fn pad(out: &mut Vec<u8>, bytes: &[u8], n: usize) {
    let bytes = &bytes[bytes.len().saturating_sub(n)..];
    out.extend(std::iter::repeat_n(0u8, n - bytes.len()));
    out.extend_from_slice(bytes);
}

impl Ticket<'_> {
    /// The Solidity tight packing the hash covers (`pm/ticket.go:flatten`): 168 bytes, or 232
    /// with the creation round and its block hash (left out when both are zero).
    pub(crate) fn flatten(&self) -> Vec<u8> {
        let p = self.params;
        let mut out = Vec::with_capacity(232);
        pad(&mut out, &p.recipient, 20);
        pad(&mut out, &self.sender, 20);
        pad(&mut out, &p.face_value, 32);
        pad(&mut out, &p.win_prob, 32);
        pad(&mut out, &self.sender_nonce.to_be_bytes(), 32);
        pad(&mut out, &p.recipient_rand_hash, 32);
        if let Some(e) = p.expiration_params.as_ref().filter(|e| !e.is_zero()) {
            pad(&mut out, &e.creation_round.to_be_bytes(), 32);
            pad(&mut out, &e.creation_round_block_hash, 32);
        }
        out
    }

    /// `keccak256(flatten)`: what the orchestrator and the TicketBroker verify the signature of.
    pub(crate) fn hash(&self) -> [u8; 32] {
        Keccak256::digest(self.flatten()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    fn hash_hex(params: &TicketParams, sender: [u8; 20], nonce: u32) -> String {
        hex::encode(params.ticket(sender, nonce).hash())
    }

    /// Upstream vectors, `pm/ticket_test.go:TestHash` (recipient, sender and recipientRandHash
    /// zero unless set).
    #[test]
    fn ticket_hash_matches_the_upstream_vectors() {
        let zero = TicketParams { recipient: vec![0; 20], recipient_rand_hash: vec![0; 32], ..Default::default() };
        assert_eq!(
            hash_hex(&zero, [0; 20], u32::MAX),
            "e1393fc7f6de093780674022f96cb8e3872235167d037c04d554e58c0e63d280"
        );
        assert_eq!(hash_hex(&zero, [0; 20], 1), "ce0918ba94518293e9712effbe5fca4f1f431089833a5b8c257cb1e024595f68");
        let fv = |face: u64, win: u64| TicketParams {
            face_value: BigUint::from(face).to_bytes_be(),
            win_prob: BigUint::from(win).to_bytes_be(),
            ..zero.clone()
        };
        assert_eq!(
            hash_hex(&fv(1, 500), [0; 20], 0),
            "87ef13f2d37e4d5352a01d3c77b8179d80e0887f1953bfabfd0bfd7b0f689ddd"
        );
        assert_eq!(
            hash_hex(&fv(500, 1), [0; 20], 0),
            "aa4b35071043587992ac8b9dd1b2cf1d8311130e6458cf0b2342484e21af5f5b"
        );
        let recipient = TicketParams { recipient: hex("73AEd7b5dEb30222fa896f399d46cC99c7BEe57F"), ..zero.clone() };
        assert_eq!(
            hash_hex(&recipient, [0; 20], 0),
            "81e353ae39046e2b77b9f996abbaeed527fda559b61ef90f299c4499dd508ccc"
        );
        let block = hex("41b1a0649752af1b28b3dc29a1556eee781e4a4c3a1f7f53f90fa834de098c4d");
        let rand = TicketParams { recipient_rand_hash: block.clone(), ..zero.clone() };
        assert_eq!(hash_hex(&rand, [0; 20], 0), "be5eaf9a49a39540b9bb02f1a21904f61324a29819e2c032824bfaa10c100b17");
        let round = TicketParams {
            expiration_params: Some(ExpirationParams { creation_round: 10, creation_round_block_hash: block }),
            ..zero.clone()
        };
        assert_eq!(hash_hex(&round, [0; 20], 0), "e502907c16036ab3d11b78c5a2e93c20f3d6415c67f91de4ed01348182b3b2e2");
        assert_eq!(round.ticket([0; 20], 0).flatten().len(), 232);
        assert_eq!(zero.ticket([0; 20], 0).flatten().len(), 168);
        // Round 0 with a non-zero block hash still emits both (`TestAuxData`).
        let half = TicketParams {
            expiration_params: Some(ExpirationParams { creation_round: 0, creation_round_block_hash: vec![1; 32] }),
            ..zero
        };
        assert_eq!(half.ticket([0; 20], 0).flatten().len(), 232);
    }

    #[test]
    fn params_decode_from_the_token_json_and_ev_is_face_value_times_probability() {
        let json = serde_json::json!({
            "recipient": STANDARD.encode([0x11; 20]),
            "face_value": STANDARD.encode(hex("038d7ea4c68000")),
            "win_prob": STANDARD.encode((((BigUint::from(1u8) << 256u32) - 1u8) / 1000u32).to_bytes_be()),
            "recipient_rand_hash": STANDARD.encode([7; 32]),
            "seed": STANDARD.encode(hex("3ade68b1")),
            "expiration_block": STANDARD.encode(hex("01406f68")),
            "expiration_params": {"creation_round": 3500, "creation_round_block_hash": STANDARD.encode([9; 32])}
        });
        let p: TicketParams = serde_json::from_value(json).expect("params");
        assert_eq!(p.recipient, vec![0x11; 20]);
        assert_eq!(p.expiration_params.as_ref().map(|e| e.creation_round), Some(3500));
        // 10^15 wei x 1/1000 = 10^12 wei.
        assert!((p.ev() - 1e12).abs() < 1.0, "{}", p.ev());
        assert!(serde_json::from_value::<TicketParams>(serde_json::json!({"recipient": "%%%"})).is_err());
    }
}
