//! Operator labels: the name an operator gives an orchestrator ("fast", "l40s-frankfurt"),
//! shown beside the gateway's id wherever the id is shown. A label is for people: it is never
//! an identity (ids stay the keys, two orchestrators may share a label) and never a metric
//! label on the gateway's own series.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// A validated operator label: 1 to 64 characters, trimmed, with no control character and
/// neither `=` nor `,` (the `--orch-addr label=url,label=url` syntax keeps those).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Label(Arc<str>);

/// Why a label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Nothing but white space.
    #[error("an orchestrator label may not be empty (use null to remove one)")]
    Empty,
    /// Over [`MAX_LABEL_CHARS`].
    #[error("an orchestrator label is at most {MAX_LABEL_CHARS} characters; this one has {0}")]
    TooLong(usize),
    /// A control character, `=` or `,`.
    #[error("an orchestrator label may not hold control characters, '=' or ','")]
    BadCharacter,
}

impl Label {
    /// Validates `raw` (surrounding white space is dropped) and wraps it.
    pub fn new(raw: &str) -> Result<Self, LabelError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(LabelError::Empty);
        }
        let chars = s.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(LabelError::TooLong(chars));
        }
        if s.chars().any(|c| c.is_control() || c == '=' || c == ',') {
            return Err(LabelError::BadCharacter);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The label as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Label {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Label::new(&s).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Label {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("Operator label: 1-64 characters, no control characters, '=' or ','"))
            .max_length(Some(MAX_LABEL_CHARS))
            .into()
    }
}

impl utoipa::ToSchema for Label {}

/// Splits one `--orch-addr` item, `label=url` or a bare `url`, into its label and address.
/// An orchestrator address never holds `=` (it is a bare origin), so the first `=` separates.
pub fn split_labelled(item: &str) -> Result<(Option<Label>, &str), LabelError> {
    match item.split_once('=') {
        Some((label, url)) => Ok((Some(Label::new(label)?), url.trim())),
        None => Ok((None, item.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_bounded_and_printable() {
        assert_eq!(Label::new("  l40s Frankfurt ").map(|l| l.to_string()), Ok("l40s Frankfurt".into()));
        assert_eq!(Label::new("Bücher-Box ✓").map(|l| l.to_string()), Ok("Bücher-Box ✓".into()));
        assert_eq!(Label::new(""), Err(LabelError::Empty));
        assert_eq!(Label::new(" \t "), Err(LabelError::Empty));
        assert!(Label::new(&"é".repeat(MAX_LABEL_CHARS)).is_ok(), "characters, not bytes");
        assert_eq!(Label::new(&"a".repeat(MAX_LABEL_CHARS + 1)), Err(LabelError::TooLong(MAX_LABEL_CHARS + 1)));
        for bad in ["a\nb", "a\u{1b}[31mb", "a=b", "a,b", "a\u{0}"] {
            assert_eq!(Label::new(bad), Err(LabelError::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn orch_addr_items_may_carry_a_label() {
        let (l, u) = split_labelled("fast=http://127.0.0.1:1").expect("valid");
        assert_eq!((l.map(|l| l.to_string()), u), (Some("fast".into()), "http://127.0.0.1:1"));
        assert_eq!(split_labelled("1.2.3.4:8935").expect("valid"), (None, "1.2.3.4:8935"));
        assert_eq!(split_labelled("=http://x:1"), Err(LabelError::Empty));
        let (l, u) = split_labelled("box one = orch.example:8935").expect("valid");
        assert_eq!((l.map(|l| l.to_string()), u), (Some("box one".into()), "orch.example:8935"));
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<Label>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<Label>("\"a\\nb\"").is_err());
        assert_eq!(serde_json::to_string(&Label::new("x").expect("valid")).expect("json"), "\"x\"");
    }
}
