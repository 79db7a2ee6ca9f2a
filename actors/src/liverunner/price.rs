//! A runner's price as discovery advertises it (`price_info: {price, currency: "wei", unit}`),
//! what it costs per second or per request, which ceiling of the app it is held against, and
//! which remote-signer payment `type` pays it.
//!
//! go-livepeer converts its operators' USD prices to wei for discovery (`live_runner.go`):
//! `hour` becomes `seconds` (wei per second), `720p` becomes `720p-pixel-seconds` (wei per
//! pixel of a 1280x720, 30 fps stream, so `price x 27,648,000` wei per second), `fixed` stays
//! `fixed` (wei per request or session). `livepeer/node` knows `seconds` and `fixed` only and
//! lists a free runner with price 0. Pure: no clock, no I/O.

use serde::Serialize;

/// Pixels a second of a 720p, 30 fps stream holds: what one `720p-pixel-seconds` unit is
/// multiplied by to get a second (go-livepeer's `defaultSegInfo`).
pub const PIXELS_PER_720P_SECOND: u64 = 1280 * 720 * 30;

/// What a runner's price is per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// Wei per second of a session or call.
    Seconds,
    /// Wei per pixel of a 720p 30 fps stream's second.
    #[serde(rename = "720p-pixel-seconds")]
    PixelSeconds720p,
    /// Wei per request (single-shot) or per session.
    Fixed,
}

impl Unit {
    /// The unit named in a discovery record (case and spaces ignored, as go-livepeer does).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "seconds" => Some(Unit::Seconds),
            "720p-pixel-seconds" => Some(Unit::PixelSeconds720p),
            "fixed" => Some(Unit::Fixed),
            _ => None,
        }
    }

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::PixelSeconds720p => "720p-pixel-seconds",
            Unit::Fixed => "fixed",
        }
    }

    /// Whether the orchestrator debits it as time passes (a session or a call must keep paying).
    pub(crate) fn metered(self) -> bool {
        self != Unit::Fixed
    }

    /// The remote signer's payment `type` for this unit (`remote_signer.go`: `live` for
    /// seconds, `lv2v` for 720p pixel-seconds, `fixed`).
    pub fn signer_type(self) -> &'static str {
        match self {
            Unit::Seconds => "live",
            Unit::PixelSeconds720p => "lv2v",
            Unit::Fixed => "fixed",
        }
    }
}

/// A runner's advertised price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RunnerPrice {
    /// Wei per unit.
    pub price: u64,
    /// The unit.
    pub unit: Unit,
}

/// The app's ceilings, one per kind of unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ceilings {
    /// Wei per second for metered runners (`seconds`, and `720p-pixel-seconds` converted).
    pub per_second: Option<u64>,
    /// Wei per request or session for `fixed` runners.
    pub per_request: Option<u64>,
}

impl RunnerPrice {
    /// Whether it is free (price 0: `livepeer/node`'s unpriced runners).
    pub(crate) fn is_free(self) -> bool {
        self.price == 0
    }

    /// Wei per second for a metered unit (`None` for `fixed`), saturating.
    pub(crate) fn per_second(self) -> Option<u64> {
        match self.unit {
            Unit::Seconds => Some(self.price),
            Unit::PixelSeconds720p => Some(self.price.saturating_mul(PIXELS_PER_720P_SECOND)),
            Unit::Fixed => None,
        }
    }

    /// The price as a pair publishes it (`price_per_unit` wei per `pixels_per_unit`): wei per
    /// second for metered units, wei per request for `fixed`. Held against
    /// [`RunnerPrice::ceiling`], the ceiling of the same kind.
    pub(crate) fn as_pair_price(self) -> (i64, i64) {
        let wei = self.per_second().unwrap_or(self.price);
        (i64::try_from(wei).unwrap_or(i64::MAX), 1)
    }

    /// The ceiling this price is held against.
    pub(crate) fn ceiling(self, c: Ceilings) -> Option<u64> {
        if self.unit.metered() {
            c.per_second
        } else {
            c.per_request
        }
    }

    /// Whether it is over the app's ceiling of its kind.
    pub fn over(self, c: Ceilings) -> bool {
        let wei = self.per_second().unwrap_or(self.price);
        self.ceiling(c).is_some_and(|ceiling| wei > ceiling)
    }

    /// The `maxPrice` a remote signer is asked to hold the orchestrator to (its unit's own
    /// terms): the app's ceiling of this kind, converted back for 720p pixel-seconds.
    pub fn signer_max_price(self, c: Ceilings) -> Option<u64> {
        let ceiling = self.ceiling(c)?;
        Some(match self.unit {
            Unit::PixelSeconds720p => ceiling / PIXELS_PER_720P_SECOND,
            Unit::Seconds | Unit::Fixed => ceiling,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_as_go_livepeer_names_them() {
        assert_eq!(Unit::parse("seconds"), Some(Unit::Seconds));
        assert_eq!(Unit::parse(" Seconds "), Some(Unit::Seconds));
        assert_eq!(Unit::parse("720p-pixel-seconds"), Some(Unit::PixelSeconds720p));
        assert_eq!(Unit::parse("FIXED"), Some(Unit::Fixed));
        for bad in ["hour", "720p", "usd", ""] {
            assert_eq!(Unit::parse(bad), None, "{bad}");
        }
        assert_eq!(Unit::Seconds.signer_type(), "live");
        assert_eq!(Unit::PixelSeconds720p.signer_type(), "lv2v");
        assert_eq!(Unit::Fixed.signer_type(), "fixed");
        assert!(Unit::Seconds.metered() && Unit::PixelSeconds720p.metered() && !Unit::Fixed.metered());
    }

    #[test]
    fn prices_are_held_against_the_ceiling_of_their_kind() {
        let c = Ceilings { per_second: Some(1_000), per_request: Some(50_000) };
        let s = |price, unit| RunnerPrice { price, unit };
        assert!(!s(1_000, Unit::Seconds).over(c));
        assert!(s(1_001, Unit::Seconds).over(c));
        // 720p pixel-seconds: 1 wei per pixel is 27,648,000 wei a second.
        assert_eq!(s(1, Unit::PixelSeconds720p).per_second(), Some(27_648_000));
        assert!(s(1, Unit::PixelSeconds720p).over(c));
        assert!(!s(0, Unit::PixelSeconds720p).over(c));
        assert!(!s(50_000, Unit::Fixed).over(c));
        assert!(s(50_001, Unit::Fixed).over(c));
        assert!(!s(u64::MAX, Unit::Fixed).over(Ceilings::default()), "no ceiling, nothing is over");
        assert_eq!(s(7, Unit::Fixed).as_pair_price(), (7, 1));
        assert_eq!(s(u64::MAX, Unit::PixelSeconds720p).as_pair_price(), (i64::MAX, 1), "saturates");
        let big = Ceilings { per_second: Some(55_296_000), per_request: None };
        assert_eq!(s(1, Unit::PixelSeconds720p).signer_max_price(big), Some(2));
        assert_eq!(s(1, Unit::Fixed).signer_max_price(big), None);
    }
}
