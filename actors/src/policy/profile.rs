//! Routing profiles: the defaults a capability's policy starts from.

use super::*;

/// Routing profile of a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Profile {
    /// Interactive jobs (image-to-image, depth): fail over fast.
    #[default]
    LowLatency,
    /// Per-frame utilities: tolerate cold starts.
    PerFrame,
    /// Chained pipelines: the most patience.
    Chained,
}

impl Profile {
    /// The profile's defaults.
    pub(crate) fn defaults(self) -> ProfileDefaults {
        let s = Duration::from_secs;
        match self {
            Profile::LowLatency => ProfileDefaults {
                retry_timeout: s(8),
                queue_timeout: s(8),
                max_attempts: 3,
                per_try_timeout: s(5),
                slow_call_threshold: s(2),
                cold_start_threshold: s(10),
            },
            Profile::PerFrame => ProfileDefaults {
                retry_timeout: s(30),
                queue_timeout: s(30),
                max_attempts: 3,
                per_try_timeout: s(20),
                slow_call_threshold: s(10),
                cold_start_threshold: s(20),
            },
            Profile::Chained => ProfileDefaults {
                retry_timeout: s(120),
                queue_timeout: s(120),
                max_attempts: 4,
                per_try_timeout: s(90),
                slow_call_threshold: s(60),
                cold_start_threshold: s(60),
            },
        }
    }
}

/// What a profile sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProfileDefaults {
    /// Overall time within which new attempts may start.
    pub(crate) retry_timeout: Duration,
    /// Longest a job waits in the queue for a free slot.
    pub(crate) queue_timeout: Duration,
    /// Attempts per job.
    pub(crate) max_attempts: u32,
    /// Bound on one attempt.
    pub(crate) per_try_timeout: Duration,
    /// Successes slower than this are slow calls.
    pub(crate) slow_call_threshold: Duration,
    /// First answers slower than this deprioritise a pair.
    pub(crate) cold_start_threshold: Duration,
}
