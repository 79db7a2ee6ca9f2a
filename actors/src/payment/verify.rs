//! What an orchestrator checks of a payment (go-livepeer `pm/validator.go`, `pm/recipient.go`),
//! for the simulator and the tests: decode `Livepeer-Payment`, recover each ticket's signer,
//! and refuse with go-livepeer's words.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use prost::Message as _;

use super::ticket::{ExpirationParams, TicketParams};
use super::wire::WirePayment;
use crate::protocol::signer::v0::{address_bytes, personal_digest_of_hash};

/// A payment as received, decoded.
#[derive(Debug, Clone)]
pub struct Received {
    /// The ticket params it echoes.
    pub params: TicketParams,
    /// The sender it names.
    pub sender: [u8; 20],
    /// Each ticket's nonce.
    pub nonces: Vec<u32>,
    /// The price it names (`price_per_unit`, `pixels_per_unit`).
    pub price: (i64, i64),
}

/// Why a payment is refused, in go-livepeer's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not base64 of a `net.Payment`.
    #[error("Could not parse payment")]
    Undecodable,
    /// The params are not the ones this orchestrator issued.
    #[error("invalid recipientRand for ticket recipientRandHash")]
    ParamsNotIssued,
    /// The recipient is not this orchestrator.
    #[error("invalid ticket recipient")]
    WrongRecipient,
    /// The sender field is not a 20-byte address.
    #[error("invalid ticket sender")]
    BadSender,
    /// A signature does not recover to the sender.
    #[error("invalid ticket signature")]
    BadSignature,
}

/// The address that signed the ticket whose hash is `ticket_hash` (the EIP-191 text hash of it,
/// as go-ethereum's `VerifySig`), or `None` for a malformed signature or a high `s`.
pub fn recover_signer(ticket_hash: &[u8; 32], sig: &[u8]) -> Option<[u8; 20]> {
    if sig.len() != 65 || !(27..=28).contains(&sig[64]) {
        return None;
    }
    let signature = Signature::from_slice(&sig[..64]).ok()?;
    if signature.normalize_s() != signature {
        // go-ethereum refuses a high s.
        return None;
    }
    let recid = RecoveryId::from_byte(sig[64] - 27)?;
    let key = VerifyingKey::recover_from_prehash(&personal_digest_of_hash(ticket_hash), &signature, recid).ok()?;
    Some(address_bytes(&key))
}

/// The `recipient_rand_hash` a payment names (which issued params it claims), if it decodes.
pub fn recipient_rand_hash(header: &str) -> Option<Vec<u8>> {
    let bytes = STANDARD.decode(header.trim()).ok()?;
    WirePayment::decode(bytes.as_slice()).ok()?.ticket_params.map(|p| p.recipient_rand_hash)
}

/// Decodes `header` and checks it against `issued` (the params the orchestrator handed out, with
/// its address as `recipient`): params echoed exactly, every ticket signed by the sender it names.
/// Nonce reuse and balances are the caller's (they need the orchestrator's memory).
pub fn check(header: &str, issued: &TicketParams) -> Result<Received, Refused> {
    let bytes = STANDARD.decode(header.trim()).map_err(|_| Refused::Undecodable)?;
    let p = WirePayment::decode(bytes.as_slice()).map_err(|_| Refused::Undecodable)?;
    let wire = p.ticket_params.ok_or(Refused::Undecodable)?;
    let params = TicketParams {
        recipient: wire.recipient,
        face_value: wire.face_value,
        win_prob: wire.win_prob,
        recipient_rand_hash: wire.recipient_rand_hash,
        seed: wire.seed,
        expiration_block: wire.expiration_block,
        expiration_params: p.expiration_params.map(|e| ExpirationParams {
            creation_round: e.creation_round,
            creation_round_block_hash: e.creation_round_block_hash,
        }),
    };
    if params.recipient != issued.recipient {
        return Err(Refused::WrongRecipient);
    }
    let same = params.face_value == issued.face_value
        && params.win_prob == issued.win_prob
        && params.recipient_rand_hash == issued.recipient_rand_hash
        && params.seed == issued.seed
        && params.expiration_block == issued.expiration_block;
    if !same {
        return Err(Refused::ParamsNotIssued);
    }
    let sender: [u8; 20] = p.sender.as_slice().try_into().map_err(|_| Refused::BadSender)?;
    let mut nonces = Vec::with_capacity(p.ticket_sender_params.len());
    for t in &p.ticket_sender_params {
        let hash = params.ticket(sender, t.sender_nonce).hash();
        if recover_signer(&hash, &t.sig) != Some(sender) {
            return Err(Refused::BadSignature);
        }
        nonces.push(t.sender_nonce);
    }
    let price = p.expected_price.map_or((0, 1), |e| (e.price_per_unit, e.pixels_per_unit));
    Ok(Received { params, sender, nonces, price })
}

#[cfg(test)]
mod tests {
    use num_bigint::BigUint;

    use super::*;
    use crate::payment::wire::payment_header;
    use crate::protocol::signer::v0::V0;

    fn setup() -> (V0, [u8; 20], TicketParams) {
        let key = V0::from_secret(&[7u8; 32]).expect("key");
        use crate::protocol::signer::Signer as _;
        let sender: [u8; 20] = hex::decode(&key.address()[2..]).expect("hex").try_into().expect("20 bytes");
        let params = TicketParams {
            recipient: vec![0x11; 20],
            face_value: BigUint::from(1_000_000u32).to_bytes_be(),
            win_prob: (((BigUint::from(1u8) << 256u32) - 1u8) / 10u32).to_bytes_be(),
            recipient_rand_hash: vec![3; 32],
            seed: vec![1, 2, 3],
            expiration_block: vec![9],
            expiration_params: Some(ExpirationParams { creation_round: 5, creation_round_block_hash: vec![4; 32] }),
        };
        (key, sender, params)
    }

    #[test]
    fn a_signed_payment_checks_out_and_tampering_is_refused() {
        let (key, sender, params) = setup();
        let tickets: Vec<(u32, [u8; 65])> =
            (1..=3).map(|n| (n, key.sign_bytes(&params.ticket(sender, n).flatten()))).collect();
        let header = payment_header(&params, sender, &tickets, (1000, 1));
        let got = check(&header, &params).expect("valid");
        assert_eq!((got.sender, got.nonces.clone(), got.price), (sender, vec![1, 2, 3], (1000, 1)));

        // Another seed than issued: the recipientRand would not match.
        let other = TicketParams { seed: vec![9, 9], ..params.clone() };
        assert_eq!(
            check(&payment_header(&other, sender, &tickets, (1000, 1)), &params).err(),
            Some(Refused::ParamsNotIssued)
        );
        // A signature for nonce 1 sent as nonce 2.
        let swapped = vec![(2, tickets[0].1)];
        assert_eq!(
            check(&payment_header(&params, sender, &swapped, (1000, 1)), &params).err(),
            Some(Refused::BadSignature)
        );
        // Signed by someone else than the sender named.
        let mallory = V0::from_secret(&[8u8; 32]).expect("key");
        let forged = vec![(1, mallory.sign_bytes(&params.ticket(sender, 1).flatten()))];
        assert_eq!(
            check(&payment_header(&params, sender, &forged, (1000, 1)), &params).err(),
            Some(Refused::BadSignature)
        );
        // Signing the hash (hashing twice) is refused, as go-livepeer refuses it.
        let twice = vec![(1, key.sign_bytes(&params.ticket(sender, 1).hash()))];
        assert_eq!(
            check(&payment_header(&params, sender, &twice, (1000, 1)), &params).err(),
            Some(Refused::BadSignature)
        );
        assert_eq!(check("%%%", &params).err(), Some(Refused::Undecodable));
    }
}
