//! Live Runner app names (`live-video-to-video/scope`): what clients route by on
//! `/apps/{app}/...` and what discovery records carry in their `app` field.
//!
//! go-livepeer checks only that an app is trimmed and non-empty; an app is conventionally
//! `pipeline/model`. It arrives from orchestrators (untrusted), becomes a board key, a metric
//! label and a path prefix, so it is validated once here: 1 to 128 bytes of ASCII letters,
//! digits, `-`, `_`, `.`, `:` and `/`, with `/` only between non-empty segments that are not
//! `.` or `..`.

use std::fmt;
use std::sync::Arc;

use crate::capability::Capability;

/// Longest app name accepted (the capability names' bound).
pub const MAX_APP_LEN: usize = crate::capability::MAX_CAPABILITY_LEN;

/// A validated app name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(Arc<str>);

/// Why an app name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppNameError {
    /// Empty.
    #[error("app name is empty")]
    Empty,
    /// Over [`MAX_APP_LEN`] bytes.
    #[error("app name is {0} bytes long; the limit is {MAX_APP_LEN}")]
    TooLong(usize),
    /// A character outside the allowed set.
    #[error("app name may only hold ASCII letters, digits, '-', '_', '.', ':' and '/'")]
    BadCharacter,
    /// An empty, `.` or `..` segment (a leading, trailing or doubled `/`).
    #[error("app name segments between '/' must be non-empty and not '.' or '..'")]
    BadSegment,
}

impl AppName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, AppNameError> {
        if name.is_empty() {
            return Err(AppNameError::Empty);
        }
        if name.len() > MAX_APP_LEN {
            return Err(AppNameError::TooLong(name.len()));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/')) {
            return Err(AppNameError::BadCharacter);
        }
        if name.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(AppNameError::BadSegment);
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of this app's boards and policies. Live Runner boards live on their own
    /// scoreboards, so an app named like a BYOC capability never shares a board with it.
    pub(crate) fn board_key(&self) -> Capability {
        Capability::from_app(self.0.clone())
    }

    /// How many `/`-separated segments the name has (path matching takes the longest app).
    pub(crate) fn segments(&self) -> usize {
        self.0.split('/').count()
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl serde::Serialize for AppName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for AppName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AppName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_app_names_pass() {
        for name in ["live-video-to-video/scope", "llm/meta-llama:3.1-8b", "echo", "a/b/c", "x.y_z"] {
            assert_eq!(AppName::new(name).map(|a| a.to_string()), Ok(name.to_string()));
        }
        assert_eq!(AppName::new("a/b/c").map(|a| a.segments()), Ok(3));
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        assert_eq!(AppName::new(""), Err(AppNameError::Empty));
        assert_eq!(AppName::new(&"a".repeat(MAX_APP_LEN + 1)), Err(AppNameError::TooLong(MAX_APP_LEN + 1)));
        for bad in ["a b", "a?b", "a%2Fb", "é", "a\\b", "a\nb"] {
            assert_eq!(AppName::new(bad), Err(AppNameError::BadCharacter), "{bad:?}");
        }
        for bad in ["/a", "a/", "a//b", "a/./b", "a/../b", "..", "."] {
            assert_eq!(AppName::new(bad), Err(AppNameError::BadSegment), "{bad:?}");
        }
    }

    #[test]
    fn the_board_key_is_the_name() {
        let app = AppName::new("live-video-to-video/scope").expect("valid");
        assert_eq!(app.board_key().as_str(), "live-video-to-video/scope");
    }
}
