//! `GET /process/token`: the orchestrator's answer (capacity, price, where to send jobs) and
//! the credential header the gateway presents to get it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::signer::Signer;

/// The orchestrator's price for a capability: `price_per_unit` wei per `pixels_per_unit`
/// units (for BYOC a unit is a second of compute).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Price {
    /// Wei per `pixels_per_unit` units. Omitted by go-livepeer when zero (offchain).
    #[serde(rename = "pricePerUnit", default)]
    pub(crate) price_per_unit: i64,
    /// Units the price covers; treated as 1 when missing or zero.
    #[serde(rename = "pixelsPerUnit", default = "one")]
    pub(crate) pixels_per_unit: i64,
}

fn one() -> i64 {
    1
}

impl Default for Price {
    fn default() -> Self {
        Self { price_per_unit: 0, pixels_per_unit: 1 }
    }
}

/// The `JobToken` JSON body (go-livepeer `byoc/types.go`). Every field is optional because
/// go omits zero values; ticket parameters are kept opaque (payments are not implemented).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct JobToken {
    /// Where to POST jobs. Empty means the orchestrator's own URL.
    #[serde(default)]
    pub(crate) service_addr: String,
    /// Capacity left for this capability right now (0 also when the capability is unknown).
    #[serde(default)]
    pub(crate) available_capacity: i64,
    /// The price, when the orchestrator charges.
    #[serde(default)]
    pub(crate) price: Option<Price>,
    /// The sender's credit at the orchestrator, in wei.
    #[serde(default)]
    pub(crate) balance: i64,
    /// Ticket parameters (on-chain only), kept as-is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ticket_params: Option<serde_json::Value>,
}

/// Seconds of compute go-livepeer's orchestrator wants paid for before it runs a job on a
/// priced capability (`job_orchestrator.go`: `balance >= 60 x price`).
pub(crate) const MIN_BALANCE_SECONDS: i128 = 60;

impl JobToken {
    /// Whether a job here would be refused for want of payment (`400 Insufficient balance for
    /// request`): the capability is priced and the balance is under 60 s of it. Exact in
    /// integers: `balance x pixels_per_unit < 60 x price_per_unit`.
    pub(crate) fn payment_required(&self) -> bool {
        match self.price {
            Some(p) if p.price_per_unit > 0 => {
                let units = i128::from(p.pixels_per_unit.max(1));
                i128::from(self.balance) * units < MIN_BALANCE_SECONDS * i128::from(p.price_per_unit)
            }
            _ => false,
        }
    }

    /// A digest of what the token says apart from its capacity (which changes with every job):
    /// service address, price, balance, ticket parameters. A pair taken out for a refusal comes
    /// back when it changes.
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.service_addr.hash(&mut h);
        self.price.map(|p| (p.price_per_unit, p.pixels_per_unit)).hash(&mut h);
        self.balance.hash(&mut h);
        self.ticket_params.as_ref().map(|t| t.to_string()).hash(&mut h);
        h.finish()
    }
}

/// The `{"addr","sig"}` credential of `Livepeer-Eth-Address`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EthAddressCredential {
    /// The gateway's address (checksummed).
    pub addr: String,
    /// Signature of `addr` by the gateway's key.
    pub sig: String,
}

/// Builds the `Livepeer-Eth-Address` header value: base64 of `{"addr","sig"}` where `sig`
/// signs the address string itself (go-livepeer `genOrchestratorReq`).
pub fn eth_address_header(signer: &dyn Signer) -> String {
    let addr = signer.address();
    let sig = signer.address_signature();
    let json = serde_json::to_vec(&EthAddressCredential { addr: addr.to_string(), sig }).unwrap_or_default();
    STANDARD.encode(json)
}

/// Decodes a `Livepeer-Eth-Address` value (the simulator checks it as an orchestrator does).
pub fn decode_eth_address_header(value: &str) -> Option<EthAddressCredential> {
    let json = STANDARD.decode(value.trim()).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::signer::Offchain;

    #[test]
    fn offchain_token_parses_with_omitted_fields() {
        let body = r#"{"sender_address":{"addr":"0x0","sig":""},"price":{"pixelsPerUnit":1},
            "service_addr":"https://o:8935","LastNonce":0}"#;
        let t: JobToken = serde_json::from_str(body).expect("parses");
        assert_eq!(t.service_addr, "https://o:8935");
        assert_eq!(t.available_capacity, 0);
        assert_eq!(t.price, Some(Price { price_per_unit: 0, pixels_per_unit: 1 }));
    }

    #[test]
    fn onchain_token_parses() {
        let body = r#"{"ticket_params":{"recipient":"AA=="},"balance":12,
            "price":{"pricePerUnit":1000,"pixelsPerUnit":4},"service_addr":"https://o","available_capacity":3}"#;
        let t: JobToken = serde_json::from_str(body).expect("parses");
        assert_eq!(t.available_capacity, 3);
        assert_eq!(t.balance, 12);
        assert_eq!(t.price.map(|p| (p.price_per_unit, p.pixels_per_unit)), Some((1000, 4)));
        assert!(t.ticket_params.is_some());
    }

    #[test]
    fn credential_round_trips() {
        let h = eth_address_header(&Offchain);
        let c = decode_eth_address_header(&h).expect("decodes");
        assert_eq!(c.addr, Offchain.address());
        assert_eq!(c.sig, "");
        assert!(decode_eth_address_header("!!").is_none());
    }

    #[test]
    fn v0_credential_signs_the_checksummed_address_string() {
        let key = [
            0x4c, 0x08, 0x83, 0xa6, 0x91, 0x02, 0x93, 0x7d, 0x62, 0x31, 0x47, 0x1b, 0x5d, 0xbb, 0x62, 0x04, 0xfe, 0x51,
            0x29, 0x61, 0x70, 0x82, 0x79, 0x2a, 0xe4, 0x68, 0xd0, 0x1a, 0x3f, 0x36, 0x23, 0x18,
        ];
        let signer = crate::protocol::signer::v0::V0::from_secret(&key).expect("valid key");
        let c = decode_eth_address_header(&eth_address_header(&signer)).expect("decodes");
        assert_eq!(c.addr, "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
        assert_eq!(c.sig, signer.sign(c.addr.as_bytes()));
        assert_eq!(c.sig.len(), 132);
    }

    #[test]
    fn payment_is_required_under_sixty_seconds_of_a_price() {
        let token = |price: i64, units: i64, balance: i64| JobToken {
            price: Some(Price { price_per_unit: price, pixels_per_unit: units }),
            balance,
            ..JobToken::default()
        };
        assert!(!JobToken::default().payment_required(), "free");
        assert!(!token(0, 1, 0).payment_required(), "free");
        assert!(token(10, 1, 599).payment_required());
        assert!(!token(10, 1, 600).payment_required(), "exactly 60 s");
        assert!(!token(10, 3, 200).payment_required(), "60 x 10/3 = 200");
        assert!(token(10, 3, 199).payment_required());
        assert!(token(i64::MAX, 1, i64::MAX).payment_required(), "no overflow");
        assert_ne!(token(10, 1, 600).fingerprint(), token(10, 1, 601).fingerprint());
        let mut a = token(10, 1, 600);
        let f = a.fingerprint();
        a.available_capacity = 7;
        assert_eq!(a.fingerprint(), f, "capacity is not part of it");
    }
}
