//! A trickle channel as a server holds it (`trickle_server.go`): the last few segments, each a
//! growing list of chunks that readers follow as they arrive. The gateway serves a stream's own
//! ingress and egress endpoints from one, and the simulator its orchestrator side.
//!
//! go-livepeer's rules, kept:
//! - a write to `-1` goes to the next sequence number; a channel's next number moves past a
//!   segment when its first byte arrives (or when it ends empty);
//! - a read of `-1` is the next segment to be written, `-2` the one being written; a read of
//!   the next segment (or of 1 before anything was written) waits for it (the segment is created
//!   ahead, so a preconnected reader gets its first byte as soon as it is written);
//! - any other segment not in the window is missing: 470 with the latest number, or a closed
//!   answer once the channel is closed;
//! - a segment is served from its start to whoever asks while it is in the window, and readers
//!   wait for more until it is closed.
//!
//! One rule go-livepeer lacks: when a segment begins, the earlier numbers created ahead by readers
//! and never written (the publisher skipped them) are closed, so their readers move on instead of
//! waiting until the window turns.
//!
//! Bounded where go-livepeer is not: a segment holds at most `max_segment_bytes` (a write past
//! it fails and the segment is closed at that point), and a channel keeps `window` segments.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{CURRENT, NEXT};

/// go-livepeer's window (`maxSegmentsPerStream`).
pub const DEFAULT_WINDOW: usize = 5;

/// How much a channel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Segments kept.
    pub window: usize,
    /// Largest segment, in bytes.
    pub max_segment_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { window: DEFAULT_WINDOW, max_segment_bytes: 16 << 20 }
    }
}

/// One channel.
#[derive(Debug)]
pub struct Channel {
    state: Mutex<State>,
    limits: Limits,
    /// Woken when the channel closes or a segment is created (readers of `/next`).
    changed: Notify,
}

#[derive(Debug)]
struct State {
    segments: Vec<Option<Arc<Segment>>>,
    next_write: i64,
    closed: bool,
    last_write: Instant,
    bytes_in: u64,
    segments_in: u64,
}

/// One segment.
#[derive(Debug)]
pub struct Segment {
    seq: i64,
    inner: Mutex<SegmentState>,
    notify: Notify,
    created: Instant,
}

#[derive(Debug, Default)]
struct SegmentState {
    chunks: Vec<Bytes>,
    bytes: usize,
    closed: bool,
    /// A writer took it (a publisher, not only readers waiting ahead).
    claimed: bool,
}

/// Why a write into a segment failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The segment would pass the channel's `max_segment_bytes`.
    #[error("the segment is over the limit of {0} bytes")]
    TooLarge(usize),
    /// The segment (or its channel) was closed meanwhile.
    #[error("the segment was closed")]
    Closed,
}

/// What a read of a sequence number found.
#[derive(Debug)]
pub enum ReadStart {
    /// The segment (it may still be waiting for its first byte).
    Segment {
        /// Its reader, at its start.
        reader: SegmentReader,
        /// The channel's next sequence number when the read started.
        latest: i64,
    },
    /// Not in the window.
    Missing {
        /// The sequence number asked for (resolved).
        seq: i64,
        /// The channel's next sequence number.
        latest: i64,
        /// Whether the channel is closed (then go-livepeer answers 200 with `Lp-Trickle-Closed`
        /// rather than 470).
        closed: bool,
    },
}

/// What a channel reports (`/next` and the admin view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelStats {
    /// The next sequence number to be written.
    pub next: i64,
    /// Whether it is closed.
    pub closed: bool,
    /// Bytes written since it was created.
    pub bytes: u64,
    /// Segments begun since it was created.
    pub segments: u64,
    /// Bytes its window holds now.
    pub held_bytes: usize,
}

impl Channel {
    /// An empty channel.
    pub fn new(limits: Limits) -> Arc<Self> {
        let window = limits.window.max(1);
        Arc::new(Self {
            state: Mutex::new(State {
                segments: vec![None; window],
                next_write: 0,
                closed: false,
                last_write: Instant::now(),
                bytes_in: 0,
                segments_in: 0,
            }),
            limits: Limits { window, ..limits },
            changed: Notify::new(),
        })
    }

    fn slot(&self, seq: i64) -> usize {
        (seq.rem_euclid(self.limits.window as i64)) as usize
    }

    /// A writer for segment `seq` ([`NEXT`]: the next one), or `None` once the channel is closed.
    /// A segment created ahead by a reader is the one written; a closed one of the same number
    /// (a publisher's retry) is replaced, as is an older segment in the same place.
    pub fn write(self: &Arc<Self>, seq: i64) -> Option<SegmentWriter> {
        let mut s = self.state.lock();
        if s.closed {
            return None;
        }
        let seq = if seq < 0 { s.next_write } else { seq };
        let slot = self.slot(seq);
        let reuse = s.segments[slot].as_ref().filter(|seg| seg.seq == seq && !seg.is_closed()).cloned();
        let segment = match reuse {
            Some(seg) => seg,
            None => {
                if let Some(old) = s.segments[slot].take() {
                    old.close();
                }
                let seg = Arc::new(Segment::new(seq));
                s.segments[slot] = Some(seg.clone());
                seg
            }
        };
        drop(s);
        segment.inner.lock().claimed = true;
        self.changed.notify_waiters();
        Some(SegmentWriter { channel: self.clone(), segment, bytes: 0, started: false, finished: false })
    }

    /// Starts a read of segment `seq` ([`NEXT`], [`CURRENT`] or a number).
    pub fn read(&self, seq: i64) -> ReadStart {
        let mut s = self.state.lock();
        let seq = match seq {
            NEXT => s.next_write,
            CURRENT => (s.next_write - 1).max(0),
            n => n,
        };
        let slot = self.slot(seq);
        let exists = |seg: &Option<Arc<Segment>>| seg.as_ref().is_some_and(|g| g.seq == seq);
        if !exists(&s.segments[slot]) && (seq == s.next_write || (s.next_write == 0 && seq == 1)) && !s.closed {
            // Just ahead of the writer: wait for it.
            if let Some(old) = s.segments[slot].take() {
                old.close();
            }
            s.segments[slot] = Some(Arc::new(Segment::new(seq)));
        }
        let latest = s.next_write;
        match s.segments[slot].as_ref().filter(|g| g.seq == seq) {
            Some(seg) => ReadStart::Segment { reader: SegmentReader { segment: seg.clone(), pos: 0 }, latest },
            None => ReadStart::Missing { seq, latest, closed: s.closed },
        }
    }

    /// Closes the channel: every segment ends (readers get the end, writers fail) and the window
    /// is emptied, as go-livepeer does.
    pub fn close(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        for seg in s.segments.iter_mut() {
            if let Some(seg) = seg.take() {
                seg.close();
            }
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// Closes segment `seq` (a publisher dropping it); `false` when it is not in the window.
    pub fn close_segment(&self, seq: i64) -> bool {
        let s = self.state.lock();
        match s.segments[self.slot(seq)].as_ref().filter(|g| g.seq == seq) {
            Some(seg) => {
                seg.close();
                true
            }
            None => false,
        }
    }

    /// Closes the segments before `seq` (a publisher that restarted: `Lp-Trickle-Reset`).
    pub fn reset_before(&self, seq: i64) {
        let s = self.state.lock();
        for seg in s.segments.iter().flatten().filter(|g| g.seq < seq) {
            seg.close();
        }
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// When the last segment began.
    pub fn last_write(&self) -> Instant {
        self.state.lock().last_write
    }

    /// Counters and the bytes held.
    pub fn stats(&self) -> ChannelStats {
        let s = self.state.lock();
        ChannelStats {
            next: s.next_write,
            closed: s.closed,
            bytes: s.bytes_in,
            segments: s.segments_in,
            held_bytes: s.segments.iter().flatten().map(|g| g.inner.lock().bytes).sum(),
        }
    }

    /// Waits until the channel closes.
    pub async fn closed(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// A segment's first byte arrived (or it ended empty): the channel's next number moves past
    /// it.
    fn began(&self, seq: i64) {
        let mut s = self.state.lock();
        s.next_write = s.next_write.max(seq + 1);
        s.last_write = Instant::now();
        s.segments_in += 1;
        for seg in s.segments.iter().flatten().filter(|g| g.seq < seq) {
            let skipped = {
                let st = seg.inner.lock();
                !st.claimed && st.bytes == 0
            };
            if skipped {
                seg.close();
            }
        }
    }

    fn wrote(&self, n: usize) {
        self.state.lock().bytes_in += n as u64;
    }
}

impl Segment {
    fn new(seq: i64) -> Self {
        Self { seq, inner: Mutex::new(SegmentState::default()), notify: Notify::new(), created: Instant::now() }
    }

    fn close(&self) {
        let mut s = self.inner.lock();
        if !s.closed {
            s.closed = true;
            drop(s);
            self.notify.notify_waiters();
        }
    }

    fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}

/// Writes one segment. Dropping it closes the segment where it is (a publisher that went away:
/// readers get what arrived, then the end).
#[derive(Debug)]
pub struct SegmentWriter {
    channel: Arc<Channel>,
    segment: Arc<Segment>,
    bytes: usize,
    started: bool,
    finished: bool,
}

impl SegmentWriter {
    /// The segment's sequence number.
    pub fn seq(&self) -> i64 {
        self.segment.seq
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a chunk; readers waiting get it at once.
    pub fn write(&mut self, chunk: Bytes) -> Result<(), WriteError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let limit = self.channel.limits.max_segment_bytes;
        if self.bytes + chunk.len() > limit {
            self.segment.close();
            return Err(WriteError::TooLarge(limit));
        }
        {
            let mut s = self.segment.inner.lock();
            if s.closed {
                return Err(WriteError::Closed);
            }
            s.bytes += chunk.len();
            self.bytes += chunk.len();
            let n = chunk.len();
            s.chunks.push(chunk);
            drop(s);
            self.channel.wrote(n);
        }
        if !self.started {
            self.started = true;
            self.channel.began(self.segment.seq);
        }
        self.segment.notify.notify_waiters();
        Ok(())
    }

    /// Ends the segment. Returns its sequence number and whether the channel is closed (go-livepeer
    /// then adds `Lp-Trickle-Closed` to the publisher's answer).
    pub fn finish(mut self) -> (i64, bool) {
        self.end();
        (self.segment.seq, self.channel.is_closed())
    }

    fn end(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if !self.started {
            // An empty segment (a preconnect whose publisher went away): the number is used up
            // anyway, so readers are not stuck on it.
            self.started = true;
            self.channel.began(self.segment.seq);
        }
        self.segment.close();
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        self.end();
    }
}

/// Reads one segment from its start, waiting for chunks as they are written.
#[derive(Debug)]
pub struct SegmentReader {
    segment: Arc<Segment>,
    pos: usize,
}

impl SegmentReader {
    /// The segment's sequence number.
    pub fn seq(&self) -> i64 {
        self.segment.seq
    }

    /// When the segment was created (a reader waiting ahead of the writer created it).
    pub fn created(&self) -> Instant {
        self.segment.created
    }

    /// The next chunk, waiting for it; `None` once the segment is closed and read to its end.
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            let notified = self.segment.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.segment.inner.lock();
                if let Some(chunk) = s.chunks.get(self.pos) {
                    self.pos += 1;
                    return Some(chunk.clone());
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// A reader of the same segment from its start.
    pub fn restart(&self) -> SegmentReader {
        SegmentReader { segment: self.segment.clone(), pos: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn limits(window: usize, max: usize) -> Limits {
        Limits { window, max_segment_bytes: max }
    }

    async fn read_all(r: &mut SegmentReader) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = r.next().await {
            out.extend_from_slice(&c);
        }
        out
    }

    #[actix_rt::test]
    async fn writes_go_to_the_next_number_and_readers_get_them_whole() {
        let ch = Channel::new(Limits::default());
        let mut w = ch.write(NEXT).expect("open");
        assert_eq!(w.seq(), 0);
        w.write(b("ab")).expect("write");
        assert_eq!(ch.stats().next, 1, "the first byte moves the next number");
        w.write(b("cd")).expect("write");
        assert_eq!(w.finish(), (0, false));
        let ReadStart::Segment { mut reader, latest } = ch.read(0) else { panic!("in the window") };
        assert_eq!((reader.seq(), latest), (0, 1));
        assert_eq!(read_all(&mut reader).await, b"abcd");
    }

    #[actix_rt::test]
    async fn a_reader_ahead_of_the_writer_waits_and_gets_each_chunk_as_it_comes() {
        let ch = Channel::new(Limits::default());
        let ReadStart::Segment { mut reader, .. } = ch.read(NEXT) else { panic!("precreated") };
        assert_eq!(reader.seq(), 0);
        let mut w = ch.write(0).expect("open");
        w.write(b("x")).expect("write");
        assert_eq!(reader.next().await, Some(b("x")));
        let waiting = actix_rt::spawn(async move { reader.next().await });
        w.write(b("y")).expect("write");
        assert_eq!(waiting.await.expect("joined"), Some(b("y")));
        // The one after next is precreated only before anything was written (go-livepeer's grace).
        assert!(matches!(ch.read(5), ReadStart::Missing { latest: 1, closed: false, .. }));
    }

    #[actix_rt::test]
    async fn old_segments_leave_the_window_and_are_missing() {
        let ch = Channel::new(limits(2, 1024));
        for i in 0..4 {
            let mut w = ch.write(NEXT).expect("open");
            w.write(Bytes::from(vec![i as u8; 3])).expect("write");
            w.finish();
        }
        assert!(matches!(ch.read(1), ReadStart::Missing { seq: 1, latest: 4, closed: false }));
        assert!(matches!(ch.read(CURRENT), ReadStart::Segment { ref reader, .. } if reader.seq() == 3));
        assert_eq!(ch.stats().held_bytes, 6, "two segments of three bytes");
        assert_eq!(ch.stats().segments, 4);
    }

    #[actix_rt::test]
    async fn closing_ends_readers_and_refuses_writers() {
        let ch = Channel::new(Limits::default());
        let ReadStart::Segment { mut reader, .. } = ch.read(NEXT) else { panic!("precreated") };
        let waiting = actix_rt::spawn(async move { reader.next().await });
        ch.close();
        assert_eq!(waiting.await.expect("joined"), None);
        assert!(ch.write(NEXT).is_none());
        assert!(matches!(ch.read(NEXT), ReadStart::Missing { closed: true, .. }), "no precreate once closed");
        ch.closed().await;
    }

    #[actix_rt::test]
    async fn a_segment_is_bounded_and_a_dropped_writer_closes_it() {
        let ch = Channel::new(limits(5, 4));
        let mut w = ch.write(NEXT).expect("open");
        w.write(b("abc")).expect("fits");
        assert_eq!(w.write(b("de")), Err(WriteError::TooLarge(4)));
        assert_eq!(w.write(b("f")), Err(WriteError::Closed), "closed where it was");
        drop(w);
        let ReadStart::Segment { mut reader, .. } = ch.read(0) else { panic!("in the window") };
        assert_eq!(read_all(&mut reader).await, b"abc");
        // An empty segment whose writer went away still uses its number up.
        let w = ch.write(NEXT).expect("open");
        assert_eq!(w.seq(), 1);
        drop(w);
        assert_eq!(ch.stats().next, 2);
    }

    #[actix_rt::test]
    async fn a_number_the_publisher_skips_does_not_hold_its_readers() {
        let ch = Channel::new(Limits::default());
        let ReadStart::Segment { mut reader, .. } = ch.read(NEXT) else { panic!("precreated") };
        assert_eq!(reader.seq(), 0);
        let waiting = actix_rt::spawn(async move { reader.next().await });
        let mut w = ch.write(3).expect("open");
        w.write(b("late")).expect("write");
        assert_eq!(waiting.await.expect("joined"), None, "segment 0 will never come: closed");
        // A number being written (a preconnected publisher) is left alone.
        let pre = ch.write(5).expect("open");
        let ReadStart::Segment { reader: r5, .. } = ch.read(5) else { panic!("claimed") };
        let mut w6 = ch.write(6).expect("open");
        w6.write(b("x")).expect("write");
        let mut r5 = r5;
        let waiting = actix_rt::spawn(async move { r5.next().await });
        drop(pre);
        assert_eq!(waiting.await.expect("joined"), None, "ended by its own writer only");
    }

    #[actix_rt::test]
    async fn a_retried_number_replaces_a_closed_segment() {
        let ch = Channel::new(Limits::default());
        let mut w = ch.write(0).expect("open");
        w.write(b("partial")).expect("write");
        drop(w);
        let mut again = ch.write(0).expect("open");
        again.write(b("whole")).expect("write");
        again.finish();
        let ReadStart::Segment { mut reader, .. } = ch.read(0) else { panic!("in the window") };
        assert_eq!(read_all(&mut reader).await, b"whole");
        assert!(ch.close_segment(0));
        assert!(!ch.close_segment(3));
    }
}
