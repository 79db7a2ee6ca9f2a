//! The protobuf messages of Live Runner payments (go-livepeer `net/lp_rpc.proto`), the subset
//! the gateway and the orchestrator read, derived with `prost` like `payment/wire.rs`:
//! `OrchestratorInfo` (a 402 challenge's `payment_params`, base64), `AuthToken`, `SegData` (the
//! `Livepeer-Segment` credentials) and `PaymentResult` (go-livepeer's answer to a session
//! payment). Fields the gateway does not use are skipped on decode, as `livepeer/node`'s
//! `pm/wire` does.

use prost::Message;

use crate::payment::wire::{WirePriceInfo, WireTicketParams};

/// `net.OrchestratorInfo`: fields 1 to 4 and 6.
#[derive(Clone, PartialEq, Message)]
pub struct OrchestratorInfo {
    /// The orchestrator's service URI.
    #[prost(string, tag = "1")]
    pub transcoder: String,
    /// Ticket params issued to the payer.
    #[prost(message, optional, tag = "2")]
    pub ticket_params: Option<WireTicketParams>,
    /// The runner's price (`pricePerUnit` wei, `pixelsPerUnit` 1).
    #[prost(message, optional, tag = "3")]
    pub price_info: Option<WirePriceInfo>,
    /// The orchestrator's address (20 bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub address: Vec<u8>,
    /// The session's authentication token.
    #[prost(message, optional, tag = "6")]
    pub auth_token: Option<AuthToken>,
}

/// `net.AuthToken`.
#[derive(Clone, PartialEq, Message)]
pub struct AuthToken {
    /// Opaque to the gateway (an HMAC of the session id and expiration).
    #[prost(bytes = "vec", tag = "1")]
    pub token: Vec<u8>,
    /// The session (manifest) id it authenticates.
    #[prost(string, tag = "2")]
    pub session_id: String,
    /// Unix seconds after which it is void.
    #[prost(int64, tag = "3")]
    pub expiration: i64,
}

/// `net.SegData`: the segment credentials, here of an empty segment.
#[derive(Clone, PartialEq, Message)]
pub struct SegData {
    /// The manifest id (a Live Runner session id).
    #[prost(bytes = "vec", tag = "1")]
    pub manifest_id: Vec<u8>,
    /// The segment's sequence number.
    #[prost(int64, tag = "2")]
    pub seq: i64,
    /// keccak256 of the segment's data.
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
    /// Legacy profiles field (go-livepeer sends `invalid` to older orchestrators).
    #[prost(bytes = "vec", tag = "4")]
    pub profiles: Vec<u8>,
    /// The payer's signature over [`flatten`](super::segment::flatten).
    #[prost(bytes = "vec", tag = "5")]
    pub sig: Vec<u8>,
    /// The segment's duration in ms.
    #[prost(int32, tag = "6")]
    pub duration: i32,
    /// The authentication token of the challenge.
    #[prost(message, optional, tag = "8")]
    pub auth_token: Option<AuthToken>,
}

/// `net.PaymentResult`: go-livepeer's answer to a session payment (fresh ticket params).
#[derive(Clone, PartialEq, Message)]
pub struct PaymentResult {
    /// Updated orchestrator info.
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}
