//! Where a subscriber reads next, and when it gives up: go-livepeer's subscriber rules as a
//! plain struct (`trickle_subscriber.go` `Read`, `byoc/trickle.go` read loops).
//!
//! A subscription starts at [`NEXT`] (the live edge). A segment moves the cursor past its
//! sequence number; a 470 moves it to the latest; a body that broke mid-way is read again
//! from its start. Failures in a row are bounded: past `max_failures` the subscription ends.
//! go-livepeer stops after the 7th failed read of the egress and data channels and the 5th of
//! the events channel (`>` against `>=`, the 3.6a correction); here one bound serves every
//! channel.

use super::{ChannelEnd, ReadAnswer, NEXT};

/// What the subscriber does after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read this segment's body.
    Read,
    /// Ask again, at [`Cursor::seq`].
    Retry,
    /// The subscription is over.
    End(ChannelEnd),
}

/// A subscriber's position and its failures in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    seq: i64,
    failures: u32,
    max_failures: u32,
}

impl Cursor {
    /// A cursor at the live edge that tolerates `max_failures` failures in a row.
    pub fn new(max_failures: u32) -> Self {
        Self::at(NEXT, max_failures)
    }

    /// A cursor at `seq`.
    pub fn at(seq: i64, max_failures: u32) -> Self {
        Self { seq, failures: 0, max_failures }
    }

    /// The sequence number to ask for next.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Applies an answer's headers.
    pub fn on_answer(&mut self, answer: ReadAnswer) -> Step {
        match answer {
            ReadAnswer::Segment(seq) => {
                self.failures = 0;
                // go-livepeer moves on only with a valid header; without one it asks for the
                // same position again (the live edge, for a cursor that never moved).
                if let Some(s) = seq.filter(|s| *s >= 0) {
                    self.seq = s + 1;
                }
                Step::Read
            }
            ReadAnswer::Skip(latest) => {
                self.seq = latest;
                self.fail("the segment asked for no longer exists (470)")
            }
            ReadAnswer::Gone => Step::End(ChannelEnd::Gone),
            ReadAnswer::Closed => Step::End(ChannelEnd::Closed),
            ReadAnswer::Failed(status) => self.fail(&format!("answered {status}")),
        }
    }

    /// The request failed without an answer (connect, reset, time-out).
    pub fn on_error(&mut self, error: &str) -> Step {
        self.fail(error)
    }

    /// The body of segment `seq` broke before its end: read it again.
    pub fn on_broken_body(&mut self, seq: i64, error: &str) -> Step {
        self.seq = seq;
        self.fail(error)
    }

    fn fail(&mut self, why: &str) -> Step {
        self.failures += 1;
        if self.failures > self.max_failures {
            Step::End(ChannelEnd::Failing(format!("{} failed reads in a row, the last: {why}", self.failures)))
        } else {
            Step::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_follows_the_segments_from_the_live_edge() {
        let mut c = Cursor::new(5);
        assert_eq!(c.seq(), -1);
        assert_eq!(c.on_answer(ReadAnswer::Segment(Some(41))), Step::Read);
        assert_eq!(c.seq(), 42);
        assert_eq!(c.on_answer(ReadAnswer::Segment(None)), Step::Read, "no header: read, stay");
        assert_eq!(c.seq(), 42);
    }

    #[test]
    fn a_470_skips_to_the_latest_and_counts() {
        let mut c = Cursor::at(3, 5);
        assert_eq!(c.on_answer(ReadAnswer::Skip(17)), Step::Retry);
        assert_eq!((c.seq(), c.failures()), (17, 1));
        assert_eq!(c.on_answer(ReadAnswer::Segment(Some(17))), Step::Read);
        assert_eq!((c.seq(), c.failures()), (18, 0), "a segment resets the count");
    }

    #[test]
    fn gone_and_closed_end_at_once() {
        assert_eq!(Cursor::new(5).on_answer(ReadAnswer::Gone), Step::End(ChannelEnd::Gone));
        assert_eq!(Cursor::new(5).on_answer(ReadAnswer::Closed), Step::End(ChannelEnd::Closed));
    }

    #[test]
    fn failures_in_a_row_are_bounded() {
        let mut c = Cursor::new(2);
        assert_eq!(c.on_error("reset"), Step::Retry);
        assert_eq!(c.on_answer(ReadAnswer::Failed(500)), Step::Retry);
        assert!(matches!(c.on_error("reset"), Step::End(ChannelEnd::Failing(m)) if m.contains("3 failed")));
        let mut c = Cursor::at(9, 2);
        assert_eq!(c.on_broken_body(9, "eof"), Step::Retry);
        assert_eq!(c.seq(), 9, "the broken segment is read again");
    }
}
