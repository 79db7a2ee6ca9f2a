//! Reading an orchestrator's answer into memory, within the gateway's answer budget
//! (`limits.answer_budget_bytes`): its bytes are taken from the budget before they are
//! allocated, in blocks sized from its `Content-Length` when it has one.

use std::cell::Cell;
use std::sync::Arc;

use awc::error::PayloadError;
use futures_util::StreamExt as _;

use super::{map_payload_error, UpstreamError};
use crate::memory::{ByteBudget, Reservation};
use crate::protocol::body::{BodyBuilder, JobBody};

/// How much of an answer of unknown length is taken from the budget block by block; past it,
/// room for the largest answer is taken at once (and what is left over given back at its end).
const UNSIZED_STEP: usize = 1 << 20;

/// Reads an answer's body into blocks taken from the `answers` budget: all of a declared
/// length at once, before reading (so such an answer never waits half-read); for an unknown
/// length, block by block up to [`UNSIZED_STEP`], then room for `max` at once. Waiting for
/// room sets `waiting`. The blocks are sized from the `Content-Length` when there is one, so a
/// large answer is held once, without the doubling and copying of a growing buffer.
pub(super) async fn read(
    resp: &mut awc::ClientResponse<impl futures_util::Stream<Item = Result<bytes::Bytes, PayloadError>> + Unpin>,
    declared: Option<usize>,
    answers: &Arc<ByteBudget>,
    max: usize,
    waiting: &Cell<bool>,
) -> Result<JobBody, UpstreamError> {
    if declared.is_some_and(|n| n > max) {
        return Err(UpstreamError::ResponseTooLarge(max));
    }
    let mut held = Reservation::new(answers);
    if let Some(n) = declared {
        hold_answer(&mut held, n, waiting).await?;
    }
    let mut builder = BodyBuilder::new(declared, false);
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.map_err(|e| map_payload_error(e, max))?;
        if builder.len() + chunk.len() > max {
            return Err(UpstreamError::ResponseTooLarge(max));
        }
        let need = builder.charge_after(chunk.len());
        // Past its first MiB, an answer of unknown length takes room for the largest answer
        // at once: answers that each hold a part while waiting for more could otherwise fill
        // the budget between them and wait for each other.
        let take = if declared.is_none() && need > UNSIZED_STEP { need.max(max) } else { need };
        hold_answer(&mut held, take, waiting).await?;
        builder.push(chunk);
    }
    held.shrink_to(builder.charged());
    Ok(builder.finish().hold(held))
}

/// Grows `held` to `bytes`, waiting for room as the budget allows ([`Reservation::grow`]).
async fn hold_answer(held: &mut Reservation, bytes: usize, waiting: &Cell<bool>) -> Result<(), UpstreamError> {
    if bytes <= held.bytes() {
        return Ok(());
    }
    waiting.set(true);
    let got = held.grow(bytes - held.bytes()).await;
    waiting.set(false);
    if got {
        Ok(())
    } else {
        Err(UpstreamError::AnswerBudget(held.budget().limit()))
    }
}
