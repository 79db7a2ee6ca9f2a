//! The Livepeer BYOC wire protocol as the gateway speaks it: the client's `Livepeer` job
//! header, the `/process/token` probe, and forwarding a job to an orchestrator.
//!
//! Source of truth: go-livepeer `byoc/` (see `shared/reference/livepeer-byoc-protocol.md`).
//! Everything here is plain async functions and data, so actors and HTTP handlers can both
//! use it and the codecs are unit-testable without a server.

pub mod body;
pub mod client;
pub mod header;
pub mod path;
pub mod signer;
pub mod sse;
pub mod token;
pub mod trickle;
pub mod via;

/// The protocol's header names, parsed once (the hot path inserts and reads them on every
/// job; turning a `&str` into a header name each time showed up in profiles).
pub mod names {
    use awc::http::header::HeaderName;

    /// The job header (base64 JSON), client to gateway and gateway to orchestrator.
    pub const LIVEPEER: HeaderName = HeaderName::from_static("livepeer");
    /// Tickets paying for a job (base64 of `net.Payment`).
    pub const LIVEPEER_PAYMENT: HeaderName = HeaderName::from_static("livepeer-payment");
    /// The gateway's signed address, on token requests.
    pub const LIVEPEER_ETH_ADDRESS: HeaderName = HeaderName::from_static("livepeer-eth-address");
    /// The capability a token is asked for.
    pub const LIVEPEER_CAPABILITY: HeaderName = HeaderName::from_static("livepeer-capability");
    /// The sender's balance after a job (orchestrator to gateway to client).
    pub const LIVEPEER_BALANCE: HeaderName = HeaderName::from_static("livepeer-balance");
    /// The balance header of an orchestrator's event stream (go-livepeer's SSE name).
    pub(crate) const LIVEPEER_PAYMENT_BALANCE: HeaderName = HeaderName::from_static("livepeer-payment-balance");
    /// Orchestrator metadata, relayed.
    pub const X_METADATA: HeaderName = HeaderName::from_static("x-metadata");
    /// Response header the gateway adds: the orchestrator `service_addr` that answered.
    pub const X_ORCHESTRATOR_URL: HeaderName = HeaderName::from_static("x-orchestrator-url");
    /// The request id, both hops.
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    /// Attempts the gateway made for a job (response).
    pub const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");
}

/// The path prefix of BYOC batch jobs at both hops.
pub const PROCESS_REQUEST_PREFIX: &str = "/process/request/";
