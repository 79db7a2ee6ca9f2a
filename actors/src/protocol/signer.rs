//! The gateway's identity towards orchestrators: the address it claims and how it signs the
//! token credential and each job.
//!
//! Pluggable because orchestrators disagree: go-livepeer master verifies "V0" signatures,
//! fork builds verify "V1". Offchain orchestrators accept any signature that decodes,
//! including the empty one, which is what [`Offchain`] sends.
//!
//! With a configured key, [`load`] unlocks a keystore v3 file ([`keystore`]) and returns the
//! signer of the chosen [`Scheme`]; only [`v0::V0`] exists today. Adding a scheme means a
//! sibling module implementing [`Signer`], a [`Scheme`] variant and one arm in [`load`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

pub(crate) mod keystore;
#[cfg(test)]
mod tests;
pub(crate) mod v0;

/// Signs on behalf of the gateway. `Debug` is required so configurations holding a signer can
/// be printed; implementations must not show key material there.
pub trait Signer: Send + Sync + std::fmt::Debug + 'static {
    /// The address sent as `sender` and in the token credential (EIP-55 checksum form).
    fn address(&self) -> &str;
    /// Signature over `msg`, as the orchestrator expects it (`0x` + 130 hex, or empty).
    fn sign(&self, msg: &[u8]) -> String;
    /// A job's `sig`: over `request` followed by `parameters` (go-livepeer signs their
    /// concatenation). Called once per job; a signer that signs nothing skips building the
    /// message.
    fn sign_job(&self, request: &str, parameters: &str) -> String {
        self.sign(format!("{request}{parameters}").as_bytes())
    }
    /// Short name for logs and the admin view.
    fn scheme(&self) -> &'static str;
    /// A payment ticket's 65-byte signature (`r || s || v`) over the EIP-191 text hash of
    /// `keccak256(flatten)`, the ticket hash; `None` for a signer that cannot pay.
    fn sign_ticket(&self, _flatten: &[u8]) -> Option<[u8; 65]> {
        None
    }
    /// A live payment's segment credentials signature (`Livepeer-Segment`): 65 bytes over the
    /// EIP-191 text hash of `keccak256(flatten)`, the same primitive as a ticket's (go-livepeer's
    /// broadcaster signs `keccak256(SegTranscodingMetadata.Flatten())` with `Eth.Sign`); `None`
    /// for a signer that cannot pay.
    fn sign_segment(&self, flatten: &[u8]) -> Option<[u8; 65]> {
        self.sign_ticket(flatten)
    }
    /// The 20-byte address tickets are sent from when [`Signer::sign_ticket`] signs (a keyed
    /// signer, so the gateway can pay); `None` otherwise.
    fn payer(&self) -> Option<[u8; 20]> {
        None
    }
    /// The token credential's signature: over the address string itself. It never changes,
    /// so keyed signers compute it once (every pair's token probe sends it).
    fn address_signature(&self) -> String {
        self.sign(self.address().as_bytes())
    }
}

/// A shared signer handle.
pub type SharedSigner = Arc<dyn Signer>;

/// No key: the zero address and empty signatures, which offchain orchestrators accept
/// (go-livepeer `VerifySig` returns true offchain for any signature that hex-decodes; `""`
/// decodes to no bytes, whereas a bare `"0x"` would not).
#[derive(Debug, Default, Clone, Copy)]
pub struct Offchain;

impl Signer for Offchain {
    fn address(&self) -> &str {
        "0x0000000000000000000000000000000000000000"
    }

    fn sign(&self, _msg: &[u8]) -> String {
        String::new()
    }

    fn sign_job(&self, _request: &str, _parameters: &str) -> String {
        String::new()
    }

    fn scheme(&self) -> &'static str {
        "offchain"
    }
}

/// The signing schemes a configured key can be used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// go-livepeer master: EIP-191 personal-sign of keccak256(message) ([`v0::V0`]).
    #[default]
    V0,
}

impl std::str::FromStr for Scheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v0" => Ok(Self::V0),
            "v1" => Err("scheme 'v1' (the binary job layout of fork builds, signed by a remote signer) is not \
                         implemented; only 'v0' (go-livepeer master) is"
                .into()),
            other => Err(format!("unknown signing scheme '{other}'; only 'v0' (go-livepeer master) is implemented")),
        }
    }
}

/// Why the configured key could not be loaded. Messages name files, never their secrets.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The keystore file could not be read.
    #[error("cannot read keystore file {path}: {source}")]
    ReadKeystore {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The password file could not be read. The message leaves the path out: go-livepeer's
    /// `-ethPassword` also takes a literal password, so the value may be a secret.
    #[error("cannot read the password file (its name is not shown, in case a password was given instead): {source}")]
    ReadPassword {
        /// The file (not displayed).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The password file holds nothing but (at most) a trailing newline.
    #[error("password file {path} is empty")]
    EmptyPassword {
        /// The file.
        path: PathBuf,
    },
    /// The keystore could not be decrypted (format, parameters, wrong password).
    #[error("keystore {path}: {source}")]
    Keystore {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: keystore::KeystoreError,
    },
    /// The file's `address` field is not the address of the key it holds.
    #[error("keystore {path}: its address field 0x{in_file} is not the address of the key it holds ({derived})")]
    AddressMismatch {
        /// The file.
        path: PathBuf,
        /// The address written in the file (lowercase hex).
        in_file: String,
        /// The address derived from the decrypted key.
        derived: String,
    },
}

/// Reads a password file: its contents as bytes, less one trailing newline (`\n` or `\r\n`,
/// as editors and `echo` leave). Other whitespace is part of the password.
pub(crate) fn read_password_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SignerError> {
    let mut bytes =
        Zeroizing::new(std::fs::read(path).map_err(|source| SignerError::ReadPassword { path: path.into(), source })?);
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(SignerError::EmptyPassword { path: path.into() });
    }
    Ok(bytes)
}

/// Unlocks the keystore v3 file `keystore` with the password in `password_file` and returns
/// the signer of `scheme`. Slow by design (the keystore's KDF: about a second for geth's
/// standard scrypt parameters), so call it once at start, off any request path.
pub fn load(scheme: Scheme, keystore_path: &Path, password_file: &Path) -> Result<SharedSigner, SignerError> {
    let json = std::fs::read(keystore_path)
        .map_err(|source| SignerError::ReadKeystore { path: keystore_path.into(), source })?;
    let password = read_password_file(password_file)?;
    let decrypted = keystore::decrypt(&json, &password)
        .map_err(|source| SignerError::Keystore { path: keystore_path.into(), source })?;
    match scheme {
        Scheme::V0 => {
            let signer = v0::V0::from_secret(&decrypted.secret)
                .map_err(|source| SignerError::Keystore { path: keystore_path.into(), source })?;
            if let Some(in_file) = decrypted.address {
                let derived = signer.address();
                if !derived.trim_start_matches("0x").eq_ignore_ascii_case(&in_file) {
                    return Err(SignerError::AddressMismatch {
                        path: keystore_path.into(),
                        in_file,
                        derived: derived.to_string(),
                    });
                }
            }
            Ok(Arc::new(signer))
        }
    }
}
