//! Admitting a job on a picked pair. The slot is already taken; what is left is the breaker.
//!
//! A pair whose breaker is closed admits on its published view, with no message to its actor
//! (the common case costs no actor round trip). A pair whose breaker is open past its time or
//! half-open is asked for a trial permit ([`Admit`]): only its actor may hand those out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics as m;
use crate::pair::{Admit, Permit, Unroutable};
use crate::scoreboard::Picked;

use super::Router;

/// A job admitted on a pair.
pub(crate) struct Admitted {
    /// Where to send it.
    pub(crate) service_addr: Arc<str>,
    /// The pair actor's lease (trials only).
    pub(crate) lease: Option<u64>,
    /// Whether it is a half-open trial.
    pub(crate) trial: bool,
}

impl From<Permit> for Admitted {
    fn from(p: Permit) -> Self {
        Self { service_addr: p.service_addr, lease: Some(p.lease), trial: p.trial }
    }
}

impl Router {
    /// Admits a job on `picked` for up to `timeout`; `Err` with the pair's reason (or `None`
    /// when its actor did not answer) when it refuses.
    pub(super) async fn admit(&self, picked: &Picked, timeout: Duration) -> Result<Admitted, Option<Unroutable>> {
        admit_on(picked, timeout, self.mailbox_timeout).await
    }
}

/// Admits work on `picked` for up to `timeout`, waiting at most `mailbox_timeout` for its actor:
/// the BYOC attempt loop's admission, shared with Live Runner's calls and sessions.
pub(crate) async fn admit_on(
    picked: &Picked,
    timeout: Duration,
    mailbox_timeout: Duration,
) -> Result<Admitted, Option<Unroutable>> {
    let fast = picked.view.read().fast_admission(Instant::now());
    if let Some(service_addr) = fast {
        return Ok(Admitted { service_addr, lease: None, trial: false });
    }
    match picked.addr.send(Admit { timeout }).timeout(mailbox_timeout).await {
        Ok(Ok(permit)) => Ok(permit.into()),
        Ok(Err(reason)) => Err(Some(reason)),
        Err(_) => {
            metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1);
            Err(None)
        }
    }
}
