//! The value of the `capability` label, which every per-capability series carries.
//!
//! Clients name capabilities freely, so a series labelled with what a client sent would let
//! any client create series without bound. The rule: the label is a capability some
//! orchestrator offers, otherwise `unknown`. A [`CapabilityLabel`] is the only value a
//! per-capability metric takes, and outside this module one is made only where that is known:
//! the scoreboard gives each board its label when an orchestrator's pair first puts the
//! capability on the board, and `Scoreboard::label` (the one place a job's label is decided)
//! hands out that label, or [`CapabilityLabel::UNKNOWN`] for a name without a board.

use metrics::SharedString;

use crate::capability::Capability;

/// A bounded `capability` label value: an offered capability's name, or `unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapabilityLabel(SharedString);

impl CapabilityLabel {
    /// The label of every name no orchestrator is known to offer.
    pub const UNKNOWN: CapabilityLabel = CapabilityLabel(SharedString::const_str("unknown"));

    /// The label of `cap`, which an orchestrator offers. Called only by the scoreboard when it
    /// opens a capability's board.
    pub(crate) fn offered(cap: &Capability) -> Self {
        Self(SharedString::from(std::sync::Arc::<str>::from(cap.as_str())))
    }

    /// The value (`unknown` or the capability's name).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value, for a metric macro (a reference-counted copy, not an allocation).
    pub(crate) fn value(&self) -> SharedString {
        self.0.clone()
    }
}

impl std::fmt::Display for CapabilityLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
