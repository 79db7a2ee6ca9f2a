//! The `net.Payment` message (go-livepeer `net/lp_rpc.proto`, the subset a payment uses),
//! derived with `prost` (no build script), and the `Livepeer-Payment` header value: standard
//! base64 of its proto3 encoding.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use prost::Message;

use super::ticket::{ExpirationParams, TicketParams};

/// `net.TicketParams`.
#[derive(Clone, PartialEq, Message)]
pub struct WireTicketParams {
    /// The orchestrator's address.
    #[prost(bytes = "vec", tag = "1")]
    pub recipient: Vec<u8>,
    /// Face value, minimal big-endian.
    #[prost(bytes = "vec", tag = "2")]
    pub face_value: Vec<u8>,
    /// Winning probability, minimal big-endian.
    #[prost(bytes = "vec", tag = "3")]
    pub win_prob: Vec<u8>,
    /// keccak256 of the orchestrator's `recipientRand`.
    #[prost(bytes = "vec", tag = "4")]
    pub recipient_rand_hash: Vec<u8>,
    /// The orchestrator's seed.
    #[prost(bytes = "vec", tag = "5")]
    pub seed: Vec<u8>,
    /// The L1 block after which the params are void.
    #[prost(bytes = "vec", tag = "6")]
    pub expiration_block: Vec<u8>,
    /// The creation round (the orchestrator ignores this copy).
    #[prost(message, optional, tag = "7")]
    pub expiration_params: Option<WireExpirationParams>,
}

/// `net.TicketExpirationParams`.
#[derive(Clone, PartialEq, Message)]
pub struct WireExpirationParams {
    /// The round number.
    #[prost(int64, tag = "1")]
    pub creation_round: i64,
    /// Its L1 block hash.
    #[prost(bytes = "vec", tag = "2")]
    pub creation_round_block_hash: Vec<u8>,
}

/// `net.TicketSenderParams`: one ticket's nonce and signature.
#[derive(Clone, PartialEq, Message)]
pub struct WireSenderParams {
    /// The ticket's nonce.
    #[prost(uint32, tag = "1")]
    pub sender_nonce: u32,
    /// Its 65-byte signature (`r || s || v`, v in {27, 28}).
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
}

/// `net.PriceInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct WirePriceInfo {
    /// Wei per `pixels_per_unit` units.
    #[prost(int64, tag = "1")]
    pub price_per_unit: i64,
    /// Units the price covers.
    #[prost(int64, tag = "2")]
    pub pixels_per_unit: i64,
    /// Unused by BYOC.
    #[prost(uint32, tag = "3")]
    pub capability: u32,
    /// Unused by BYOC.
    #[prost(string, tag = "4")]
    pub constraint: String,
}

/// `net.Payment`.
#[derive(Clone, PartialEq, Message)]
pub struct WirePayment {
    /// The token's ticket params, verbatim.
    #[prost(message, optional, tag = "1")]
    pub ticket_params: Option<WireTicketParams>,
    /// The gateway's address (the job header's `sender`).
    #[prost(bytes = "vec", tag = "2")]
    pub sender: Vec<u8>,
    /// The batch's expiration params (required: a missing one crashes the orchestrator).
    #[prost(message, optional, tag = "3")]
    pub expiration_params: Option<WireExpirationParams>,
    /// One per ticket.
    #[prost(message, repeated, tag = "4")]
    pub ticket_sender_params: Vec<WireSenderParams>,
    /// The token's price, verbatim.
    #[prost(message, optional, tag = "5")]
    pub expected_price: Option<WirePriceInfo>,
}

impl From<&ExpirationParams> for WireExpirationParams {
    fn from(e: &ExpirationParams) -> Self {
        Self { creation_round: e.creation_round, creation_round_block_hash: e.creation_round_block_hash.clone() }
    }
}

impl From<&TicketParams> for WireTicketParams {
    fn from(p: &TicketParams) -> Self {
        Self {
            recipient: p.recipient.clone(),
            face_value: p.face_value.clone(),
            win_prob: p.win_prob.clone(),
            recipient_rand_hash: p.recipient_rand_hash.clone(),
            seed: p.seed.clone(),
            expiration_block: p.expiration_block.clone(),
            expiration_params: p.expiration_params.as_ref().map(Into::into),
        }
    }
}

/// The `Livepeer-Payment` value for tickets `(nonce, signature)` drawn from `params` by
/// `sender`, at `price` (`price_per_unit`, `pixels_per_unit`) as the token gave it.
pub(crate) fn payment_header(
    params: &TicketParams,
    sender: [u8; 20],
    tickets: &[(u32, [u8; 65])],
    price: (i64, i64),
) -> String {
    let payment = WirePayment {
        ticket_params: Some(params.into()),
        sender: sender.to_vec(),
        expiration_params: Some(params.expiration_params.as_ref().map(Into::into).unwrap_or_default()),
        ticket_sender_params: tickets
            .iter()
            .map(|(nonce, sig)| WireSenderParams { sender_nonce: *nonce, sig: sig.to_vec() })
            .collect(),
        expected_price: Some(WirePriceInfo { price_per_unit: price.0, pixels_per_unit: price.1, ..Default::default() }),
    };
    STANDARD.encode(payment.encode_to_vec())
}

impl From<&WireExpirationParams> for ExpirationParams {
    fn from(e: &WireExpirationParams) -> Self {
        Self { creation_round: e.creation_round, creation_round_block_hash: e.creation_round_block_hash.clone() }
    }
}

impl From<&WireTicketParams> for TicketParams {
    fn from(p: &WireTicketParams) -> Self {
        Self {
            recipient: p.recipient.clone(),
            face_value: p.face_value.clone(),
            win_prob: p.win_prob.clone(),
            recipient_rand_hash: p.recipient_rand_hash.clone(),
            seed: p.seed.clone(),
            expiration_block: p.expiration_block.clone(),
            expiration_params: p.expiration_params.as_ref().map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use num_bigint::BigUint;

    use super::*;
    use crate::protocol::signer::v0::V0;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    /// The derived end-to-end vector of the reference (`go-livepeer-parity.md` §2.10): ticket
    /// hash, signature and the whole `Livepeer-Payment` value, byte for byte.
    #[test]
    fn derived_end_to_end_vector() {
        let key =
            V0::from_secret(&hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")).expect("key");
        let sender: [u8; 20] = hex("2c7536E3605D9C16a7a3D7b1898e529396a65c23").try_into().expect("20 bytes");
        let win_prob = ((BigUint::from(1u8) << 256u32) - 1u8) / 1000u32;
        let params = TicketParams {
            recipient: vec![0x11; 20],
            face_value: hex("038d7ea4c68000"),
            win_prob: win_prob.to_bytes_be(),
            recipient_rand_hash: hex("f395757e0d74803aae4e8adb875451d99622e911b61c64e044e0bd16a16f18cd"),
            seed: hex("3ade68b1"),
            expiration_block: hex("01406f68"),
            expiration_params: Some(ExpirationParams {
                creation_round: 3500,
                creation_round_block_hash: hex("41b1a0649752af1b28b3dc29a1556eee781e4a4c3a1f7f53f90fa834de098c4d"),
            }),
        };
        assert_eq!(params.win_prob.len(), 31);
        let ticket = params.ticket(sender, 1);
        assert_eq!(ticket.flatten().len(), 232);
        assert_eq!(hex::encode(ticket.hash()), "c0a9942b67a5e435b29539236b8689d3665387d37433243b9c3378239eba1c86");
        // The signature is over keccak256(flatten) = the ticket hash, EIP-191 wrapped: V0's
        // sign_bytes of the flattened ticket (never of the hash, which would hash twice).
        let sig = key.sign_bytes(&ticket.flatten());
        assert_eq!(
            hex::encode(sig),
            "13e8c8286781ca6b1d20d021cecc349b0ce8b8610b99a13898e7cfdead5493d721a6e894b4c4a75ca72e41053e2ab9d6928ab2487eb36683db3b2a28f7edca591c"
        );
        let header = payment_header(&params, sender, &[(1, sig)], (1000, 1));
        assert_eq!(STANDARD.decode(&header).expect("base64").len(), 291);
        assert_eq!(
            header,
            "CpUBChQRERERERERERERERERERERERERERIHA41+pMaAABofQYk3S8an752yLQ5WBBiTdLxqfvnbItDlYEGJN0vGpyIg85V1fg10gDquTorbh1RR2ZYi6RG2HGTgROC9FqFvGM0qBDreaLEyBAFAb2g6JQisGxIgQbGgZJdSrxsos9wpoVVu7ngeSkw6H39T+Q+oNN4JjE0SFCx1NuNgXZwWp6PXsYmOUpOWplwjGiUIrBsSIEGxoGSXUq8bKLPcKaFVbu54HkpMOh9/U/kPqDTeCYxNIkUIARJBE+jIKGeBymsdINAhzsw0mwzouGELmaE4mOfP3q1Uk9chpuiUtMSnXKcuQQU+KrnWkoqySH6zZoPbOyoo9+3KWRwqBQjoBxAB"
        );
        // And it decodes back to what was sent.
        let back = WirePayment::decode(STANDARD.decode(&header).expect("base64").as_slice()).expect("decode");
        assert_eq!(back.ticket_sender_params[0].sender_nonce, 1);
        assert_eq!(back.sender, sender.to_vec());
    }

    /// `crypto/verify_test.go:TestVerifySig`: the signature recovers to its signer through the
    /// EIP-191 text hash of the 32-byte message, not from the raw hash.
    #[test]
    fn upstream_signature_vector_recovers_through_the_text_hash() {
        use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
        let msg = hex("b7da355477356fc4c47fcabcf232dc77a6db9b07b7e48b76261cc55cc8fbabb3");
        let sig = hex("206443228e8f784bc3a122de0d85eb3ebff82d6a79cca26c7eeb907099a6404f6dff57bc6828f28bd6cd073c89d94cf3364204679ed8365fa45b5ee6af19a9841c");
        let signature = Signature::from_slice(&sig[..64]).expect("sig");
        let recid = RecoveryId::from_byte(sig[64] - 27).expect("v");
        let recover = |digest: &[u8]| {
            VerifyingKey::recover_from_prehash(digest, &signature, recid)
                .map(|k| crate::protocol::signer::v0::checksum_address(&crate::protocol::signer::v0::address_bytes(&k)))
        };
        let text_hash = crate::protocol::signer::v0::personal_digest_of_hash(&msg);
        assert_eq!(recover(&text_hash).expect("recovers"), "0x3BadDb1eeE2105893136A3F96c8a963E9C6309d6");
        assert_ne!(recover(&msg).ok().as_deref(), Some("0x3BadDb1eeE2105893136A3F96c8a963E9C6309d6"));
    }
}
