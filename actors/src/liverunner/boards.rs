//! The app boards: two scoreboards, one for persistent runners (sessions) and one for
//! single-shot runners (calls), each keyed by app, plus the index of known app names that
//! resolves a client's `/apps/{app}/...` path. The boards are the BYOC scoreboard itself
//! (selection, slots, queue); only the keys differ, and they live apart from BYOC's boards so
//! an app named like a capability never meets it.
//!
//! An app name holds `/`, so where it ends in a path is decided by what is known: the longest
//! run of leading segments that names an app (or an operator's alias) wins. A client may also
//! send the name percent-encoded as one segment (`live-video-to-video%2Fscope`).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::app::AppName;
use super::record::Mode;
use crate::scoreboard::Scoreboard;

/// The app boards and the app index, shared by the discovery actor (which fills them) and the
/// HTTP workers (which select from them).
#[derive(Clone, Default)]
pub struct Boards {
    /// Persistent runners, by app: sessions are placed here.
    pub(crate) sessions: Scoreboard,
    /// Single-shot runners, by app: calls are placed here.
    pub(crate) calls: Scoreboard,
    index: Arc<RwLock<AppIndex>>,
}

/// Known app names and aliases.
#[derive(Debug, Default)]
struct AppIndex {
    /// Apps some runner serves, with how many runners of each mode.
    apps: BTreeMap<AppName, (u32, u32)>,
    /// Operator-defined aliases.
    aliases: BTreeMap<String, AppName>,
    /// Most segments of any name or alias.
    max_segments: usize,
}

/// An app a path named, and how many of its segments the name took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The app.
    pub app: AppName,
    /// Segments of the path the name (or alias) took.
    pub segments: usize,
}

impl Boards {
    /// Boards knowing the operator's `aliases` (alias -> app).
    pub fn with_aliases(aliases: Vec<(String, AppName)>) -> Self {
        let b = Self::default();
        {
            let mut i = b.index.write();
            i.aliases = aliases.into_iter().collect();
            i.max_segments = i.aliases.keys().map(|a| a.split('/').count()).max().unwrap_or(0);
        }
        b
    }

    /// The board of `mode`.
    pub(crate) fn of(&self, mode: Mode) -> &Scoreboard {
        match mode {
            Mode::Persistent => &self.sessions,
            Mode::SingleShot => &self.calls,
        }
    }

    /// Replaces the known apps (`(app, persistent runners, single-shot runners)`).
    pub(crate) fn set_apps(&self, apps: BTreeMap<AppName, (u32, u32)>) {
        let mut i = self.index.write();
        let from_apps = apps.keys().map(AppName::segments).max().unwrap_or(0);
        let from_aliases = i.aliases.keys().map(|a| a.split('/').count()).max().unwrap_or(0);
        i.max_segments = from_apps.max(from_aliases);
        i.apps = apps;
    }

    /// Whether `app` is served by some runner (its name is then a bounded metric label).
    pub fn known(&self, app: &AppName) -> bool {
        self.index.read().apps.contains_key(app)
    }

    /// Every known app with its runner counts (persistent, single-shot).
    pub fn apps(&self) -> Vec<(AppName, (u32, u32))> {
        self.index.read().apps.iter().map(|(a, n)| (a.clone(), *n)).collect()
    }

    /// The app `segments` (a path after `/apps/`, split on `/`, still percent-encoded) start
    /// with: an alias or a known app, the longest first; or, when the first segment is a
    /// percent-encoded name, that name. `None` when nothing matches.
    pub fn resolve(&self, segments: &[&str]) -> Option<Resolved> {
        let first = *segments.first()?;
        if first.contains('%') {
            let decoded = percent_encoding::percent_decode_str(first).decode_utf8().ok()?;
            let app = AppName::new(&decoded).ok()?;
            let i = self.index.read();
            let app = i.aliases.get(app.as_str()).cloned().unwrap_or(app);
            return Some(Resolved { app, segments: 1 });
        }
        let i = self.index.read();
        for n in (1..=i.max_segments.min(segments.len())).rev() {
            let name = segments[..n].join("/");
            if let Some(app) = i.aliases.get(&name) {
                return Some(Resolved { app: app.clone(), segments: n });
            }
            if let Ok(app) = AppName::new(&name) {
                if i.apps.contains_key(&app) {
                    return Some(Resolved { app, segments: n });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(s: &str) -> AppName {
        AppName::new(s).expect("valid")
    }

    #[test]
    fn the_longest_known_name_wins_and_aliases_and_encoded_names_work() {
        let b = Boards::with_aliases(vec![("scope".into(), app("live-video-to-video/scope"))]);
        b.set_apps(BTreeMap::from([
            (app("live-video-to-video/scope"), (1, 0)),
            (app("live-video-to-video"), (0, 1)),
            (app("echo"), (0, 1)),
        ]));
        let r = |p: &str| b.resolve(&p.split('/').collect::<Vec<_>>()).map(|r| (r.app.to_string(), r.segments));
        assert_eq!(r("live-video-to-video/scope/session"), Some(("live-video-to-video/scope".into(), 2)));
        assert_eq!(r("live-video-to-video/other"), Some(("live-video-to-video".into(), 1)));
        assert_eq!(r("scope/session"), Some(("live-video-to-video/scope".into(), 1)));
        assert_eq!(r("echo"), Some(("echo".into(), 1)));
        assert_eq!(r("live-video-to-video%2Fscope/x"), Some(("live-video-to-video/scope".into(), 1)));
        assert_eq!(r("unknown/x"), None);
        assert_eq!(r("%zz"), None);
        assert!(b.known(&app("echo")));
        assert!(!b.known(&app("scope")), "an alias is not an app");
    }
}
