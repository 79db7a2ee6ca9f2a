//! Capability names: the stable contract clients route by (`image-to-image`, `depth`, ...).
//!
//! A name arrives from untrusted clients (inside the `Livepeer` header or as an AI-runner
//! path), becomes a map key in several actors and a metrics label, so it is validated once
//! here and carried as a cheap-to-clone newtype afterwards.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest accepted capability name. go-livepeer does not bound it; we do, because every
/// distinct name a client sends could otherwise create state.
pub const MAX_CAPABILITY_LEN: usize = 128;

/// A validated capability name: 1..=128 bytes of ASCII letters, digits, `-`, `_`, `.` or `:`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Capability(Arc<str>);

/// Why a capability name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The name is empty.
    #[error("capability name is empty")]
    Empty,
    /// The name is longer than [`MAX_CAPABILITY_LEN`].
    #[error("capability name is {0} bytes long; the limit is {MAX_CAPABILITY_LEN}")]
    TooLong(usize),
    /// The name holds a character outside the allowed set.
    #[error("capability name may only hold ASCII letters, digits, '-', '_', '.' or ':'")]
    BadCharacter,
}

impl Capability {
    /// Validates `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, CapabilityError> {
        if name.is_empty() {
            return Err(CapabilityError::Empty);
        }
        if name.len() > MAX_CAPABILITY_LEN {
            return Err(CapabilityError::TooLong(name.len()));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')) {
            return Err(CapabilityError::BadCharacter);
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The board key of a Live Runner app, already validated by
    /// [`AppName`](crate::liverunner::AppName) (whose names may hold `/`). App boards and
    /// policies live apart from the BYOC ones, so the two name spaces never meet.
    pub(crate) fn from_app(name: Arc<str>) -> Self {
        Self(name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl utoipa::PartialSchema for Capability {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("Capability name: 1-128 ASCII letters, digits, '-', '_', '.' or ':'"))
            .max_length(Some(MAX_CAPABILITY_LEN))
            .into()
    }
}

impl utoipa::ToSchema for Capability {}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Capability::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_names() {
        for name in ["image-to-image", "depth", "text_reversal", "llm:v2", "a.b"] {
            assert_eq!(Capability::new(name).map(|c| c.to_string()), Ok(name.to_string()));
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(Capability::new(""), Err(CapabilityError::Empty));
        assert_eq!(Capability::new("a b"), Err(CapabilityError::BadCharacter));
        assert_eq!(Capability::new("x/y"), Err(CapabilityError::BadCharacter));
        assert_eq!(Capability::new("é"), Err(CapabilityError::BadCharacter));
        let long = "a".repeat(MAX_CAPABILITY_LEN + 1);
        assert_eq!(Capability::new(&long), Err(CapabilityError::TooLong(129)));
        assert!(Capability::new(&"a".repeat(MAX_CAPABILITY_LEN)).is_ok());
    }

    #[test]
    fn deserialize_validates() {
        let ok: Result<Capability, _> = serde_json::from_str("\"depth\"");
        assert!(ok.is_ok());
        let bad: Result<Capability, _> = serde_json::from_str("\"no spaces\"");
        assert!(bad.is_err());
    }
}
