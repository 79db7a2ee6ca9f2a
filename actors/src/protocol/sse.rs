//! Server-Sent Events framing as the gateway relays an orchestrator's stream, line by line as
//! go-livepeer's gateway does (`job_gateway.go:submitJob`):
//!
//! - the stream **ends at the first line containing `[DONE]`**: that line is relayed (with the
//!   blank line that completes its event), then nothing more. go-livepeer's orchestrator does
//!   not end an SSE answer after `[DONE]`: it writes blank lines until the job's timeout,
//!   holding its capacity slot and charging for the time; hanging up at `[DONE]` is what ends
//!   the job there;
//! - **runs of blank lines collapse to one** (one blank line ends an event; more carry
//!   nothing), so a lingering orchestrator's flood of `\n` does not reach the client; a run
//!   after a blank line is skipped without being copied;
//! - **a stream that sends only blank lines for [`MAX_BLANK_RUN`] bytes in a row is over**:
//!   go-livepeer's orchestrator, when its worker's stream ends without `[DONE]`, writes `\n` in
//!   a tight loop until the job's timeout, and relaying (even dropping) that flood cost a core
//!   per stream. No event stream pauses that way (a keep-alive is one line now and then), so
//!   the caller ends the relay and drops the upstream.
//!
//! Pure: bytes in, bytes out, no clock and no I/O. A line longer than [`MAX_LINE`] is passed
//! through as it arrives instead of being held whole (memory stays bounded); such a line is
//! not checked for `[DONE]`.

use bytes::{BufMut, Bytes, BytesMut};

/// Longest line held while looking for its end (go-livepeer's `bufio.Scanner` limit).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Bytes of nothing but line ends (`\n`, `\r`) in a row after which a stream is over.
pub(crate) const MAX_BLANK_RUN: usize = 64 * 1024;

const DONE: &[u8] = b"[DONE]";

/// The relay's state between two chunks of one stream.
#[derive(Debug, Default)]
pub(crate) struct SseLines {
    /// The current line, not yet ended by `\n`.
    partial: BytesMut,
    /// The current line was too long to hold and is being passed through.
    passing: bool,
    /// The last line relayed was blank (or nothing was relayed yet after a blank line).
    after_blank: bool,
    /// `[DONE]` was relayed: the stream is over.
    done: bool,
    /// Line-end bytes received in a row (since the last other byte).
    blank_run: usize,
    /// `blank_run` reached [`MAX_BLANK_RUN`]: the stream is over.
    flooded: bool,
}

impl SseLines {
    /// A relay for a new stream.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether `[DONE]` has been relayed (the caller ends the stream and drops the upstream).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the orchestrator has sent nothing but blank lines for [`MAX_BLANK_RUN`] bytes
    /// (the caller ends the stream and drops the upstream).
    pub(crate) fn is_flooded(&self) -> bool {
        self.flooded
    }

    /// Feeds one chunk from the orchestrator; returns what to relay now (possibly empty).
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Bytes {
        if self.done || self.flooded {
            return Bytes::new();
        }
        self.count_blank_run(chunk);
        let mut out = BytesMut::new();
        let mut rest = chunk;
        while !rest.is_empty() && !self.done {
            if self.after_blank && self.partial.is_empty() && !self.passing {
                // More blank lines after a blank line carry nothing: skip them in place.
                rest = &rest[blank_lines(rest)..];
                if rest.is_empty() {
                    break;
                }
            }
            if out.capacity() == 0 {
                // Allocated once something may be relayed (a skipped flood allocates nothing).
                out.reserve(rest.len());
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (line, tail) = rest.split_at(i + 1);
                    rest = tail;
                    if self.passing {
                        out.put_slice(line);
                        self.passing = false;
                        self.after_blank = false;
                        continue;
                    }
                    self.partial.put_slice(line);
                    let line = self.partial.split();
                    self.line(&line, &mut out);
                }
                None => {
                    if self.passing {
                        out.put_slice(rest);
                    } else if self.partial.len() + rest.len() > MAX_LINE {
                        // Too long to hold: relay what there is and the rest as it comes.
                        out.put_slice(&self.partial.split());
                        out.put_slice(rest);
                        self.passing = true;
                        self.after_blank = false;
                    } else {
                        self.partial.put_slice(rest);
                    }
                    rest = &[];
                }
            }
        }
        out.freeze()
    }

    /// Counts the line-end bytes in a row at the end of `chunk` (all of it continues the run).
    fn count_blank_run(&mut self, chunk: &[u8]) {
        let trailing = chunk.iter().rev().take_while(|&&b| matches!(b, b'\n' | b'\r')).count();
        self.blank_run = if trailing == chunk.len() { self.blank_run.saturating_add(trailing) } else { trailing };
        self.flooded = self.blank_run >= MAX_BLANK_RUN;
    }

    /// What is left when the orchestrator ends the stream: a last line without its `\n`.
    pub(crate) fn finish(&mut self) -> Bytes {
        if self.done || self.flooded || self.partial.is_empty() {
            return Bytes::new();
        }
        let line = self.partial.split();
        let mut out = BytesMut::with_capacity(line.len());
        self.line(&line, &mut out);
        out.freeze()
    }

    /// One whole line (with its `\n`, if it had one).
    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            if !self.after_blank {
                out.put_slice(line);
                self.after_blank = true;
            }
            return;
        }
        self.after_blank = false;
        out.put_slice(line);
        if !line.ends_with(b"\n") {
            out.put_u8(b'\n');
        }
        if content.windows(DONE.len()).any(|w| w == DONE) {
            // The blank line that dispatches the `[DONE]` event, then nothing more.
            out.put_u8(b'\n');
            self.done = true;
            self.partial.clear();
        }
    }
}

/// The length of the whole blank lines (`\n` or `\r\n`) `bytes` starts with.
fn blank_lines(bytes: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match bytes.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut s = SseLines::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&s.feed(c));
        }
        out.extend_from_slice(&s.finish());
        (out, s.is_done())
    }

    #[test]
    fn ends_at_done_and_drops_the_blank_flood_after_it() {
        let (out, done) = relay(&[b"data: {\"n\":0}\n\ndata: [DONE]\n\n\n\n\n", b"\n\n\n", b"data: late\n"]);
        assert_eq!(out, b"data: {\"n\":0}\n\ndata: [DONE]\n\n");
        assert!(done);
    }

    #[test]
    fn done_split_across_chunks_is_found() {
        let (out, done) = relay(&[b"data: [DO", b"NE]", b"\n", b"data: after\n\n"]);
        assert_eq!(out, b"data: [DONE]\n\n");
        assert!(done);
    }

    #[test]
    fn blank_runs_collapse_and_events_pass_unchanged() {
        let (out, done) = relay(&[b"data: a\n\n\n\n\r\ndata: b\r\n\r\n"]);
        assert_eq!(out, b"data: a\n\ndata: b\r\n\r\n");
        assert!(!done);
        // go-livepeer injects a balance line before [DONE]: relayed like any other.
        let (out, _) = relay(&[b"data: {\"balance\": 940}\ndata: [DONE]\n"]);
        assert_eq!(out, b"data: {\"balance\": 940}\ndata: [DONE]\n\n");
    }

    #[test]
    fn a_last_line_without_newline_is_relayed_at_the_end() {
        let (out, done) = relay(&[b"data: a\n\ndata: [DONE]"]);
        assert_eq!(out, b"data: a\n\ndata: [DONE]\n\n");
        assert!(done);
        let (out, _) = relay(&[b": comment"]);
        assert_eq!(out, b": comment\n");
    }

    #[test]
    fn a_blank_flood_ends_the_stream_after_the_bound() {
        let mut s = SseLines::new();
        assert_eq!(&s.feed(b"data: a\n\n")[..], b"data: a\n\n");
        let flood = vec![b'\n'; 4096];
        let mut relayed = 0;
        let mut chunks = 0;
        while !s.is_flooded() {
            relayed += s.feed(&flood).len();
            chunks += 1;
            assert!(chunks <= MAX_BLANK_RUN / flood.len(), "ended by the bound");
        }
        assert_eq!(relayed, 0, "nothing of the flood is relayed");
        assert_eq!(chunks, MAX_BLANK_RUN / flood.len());
        assert!(s.feed(b"data: late\n").is_empty());
        assert!(s.finish().is_empty());
        assert!(!s.is_done(), "not a [DONE]");
    }

    #[test]
    fn blank_runs_count_across_chunks_and_any_other_byte_resets_them() {
        let mut s = SseLines::new();
        let half = vec![b'\n'; MAX_BLANK_RUN / 2];
        s.feed(&half);
        // CRLF and bare CR count too; an event in between starts the count again.
        s.feed(b"\r\n\r");
        s.feed(b"data: b\n");
        assert!(!s.is_flooded());
        s.feed(&half);
        assert!(!s.is_flooded(), "{} in a row since the event", half.len() + 1);
        let mut mixed = b"data: c".to_vec();
        mixed.extend_from_slice(&vec![b'\n'; MAX_BLANK_RUN]);
        let out = s.feed(&mixed);
        assert!(s.is_flooded());
        assert_eq!(&out[..], b"data: c\n\n", "what came before the flood is relayed, with its blank line");
    }

    #[test]
    fn a_huge_line_passes_through_without_being_held() {
        let big = vec![b'x'; MAX_LINE + 10];
        let mut s = SseLines::new();
        let first = s.feed(b"data: ");
        assert!(first.is_empty(), "a short partial line is held");
        let mid = s.feed(&big);
        assert_eq!(mid.len(), 6 + big.len(), "past the limit everything held is relayed at once");
        assert!(s.partial.is_empty());
        let end = s.feed(b"yy\n\ndata: [DONE]\n");
        assert_eq!(&end[..], b"yy\n\ndata: [DONE]\n\n");
        assert!(s.is_done());
    }
}
