//! The gateway's identity towards orchestrators: the address it claims and how it signs the
//! token credential and each job.
//!
//! Pluggable because orchestrators disagree: go-livepeer master verifies "V0" signatures,
//! fork builds verify "V1". Offchain orchestrators accept any signature that decodes,
//! including the empty one, which is what [`Offchain`] sends.

use std::sync::Arc;

/// Signs on behalf of the gateway.
pub trait Signer: Send + Sync + 'static {
    /// The address sent as `sender` and in the token credential (EIP-55 checksum form).
    fn address(&self) -> String;
    /// Signature over `msg`, as the orchestrator expects it (`0x` + 130 hex, or empty).
    fn sign(&self, msg: &[u8]) -> String;
    /// Short name for logs and the admin view.
    fn scheme(&self) -> &'static str;
}

/// A shared signer handle.
pub type SharedSigner = Arc<dyn Signer>;

/// No key: the zero address and empty signatures, which offchain orchestrators accept
/// (go-livepeer `VerifySig` returns true offchain for any signature that hex-decodes; `""`
/// decodes to no bytes, whereas a bare `"0x"` would not).
#[derive(Debug, Default, Clone, Copy)]
pub struct Offchain;

impl Signer for Offchain {
    fn address(&self) -> String {
        "0x0000000000000000000000000000000000000000".to_string()
    }

    fn sign(&self, _msg: &[u8]) -> String {
        String::new()
    }

    fn scheme(&self) -> &'static str {
        "offchain"
    }
}
