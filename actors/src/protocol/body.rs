//! A body held in memory: a job's request body (replayed on every attempt) or an
//! orchestrator's answer (relayed to the client), as a list of blocks shared by reference.
//!
//! [`BodyBuilder`] copies what arrives into blocks of bounded size, so memory follows the
//! bytes received whatever the sender's chunking: a body sent as a million 1-byte chunks is
//! held in a few dozen blocks, not as a million chunks each pinning the read buffer it was cut
//! from. What it allocates is known ([`BodyBuilder::charge_after`]), so a budget can count
//! real bytes and refuse them before they are allocated. One chunk alone (the usual small
//! body) is kept as it came, without a copy.
//!
//! [`JobBody`] shares its blocks between attempts by reference count: an attempt streams them
//! ([`JobBody::stream`]) without copying the list or the bytes, and the client library copies
//! one block at a time into its write buffer. A body may carry the budget reservation for its
//! bytes ([`JobBody::hold`]), given back only when the last stream of it is dropped, that is,
//! once its bytes are no longer in memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use awc::body::{BodySize, MessageBody};
use bytes::{Bytes, BytesMut};

use crate::memory::Reservation;

/// The first block of a body of unknown length; later ones double up to [`MAX_BLOCK`].
pub const MIN_BLOCK: usize = 4 * 1024;
/// The largest block: the most a body wastes at its end, and the most it allocates at once.
pub const MAX_BLOCK: usize = 64 * 1024;

/// A body's blocks and total length, shared by reference count.
#[derive(Debug, Clone, Default)]
pub struct JobBody {
    inner: Arc<Held>,
}

#[derive(Debug, Default)]
struct Held {
    chunks: Vec<Bytes>,
    len: usize,
    /// The budget bytes of the blocks, given back with them.
    _reservation: Option<Reservation>,
}

impl JobBody {
    /// A body of these chunks, in order.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Self {
        let len = chunks.iter().map(Bytes::len).sum();
        Self { inner: Arc::new(Held { chunks, len, _reservation: None }) }
    }

    /// Makes `reservation` live as long as the body's bytes: until this body and every stream
    /// of it are dropped.
    pub fn hold(self, reservation: Reservation) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut held) => {
                held._reservation = Some(reservation);
                Self { inner: Arc::new(held) }
            }
            // Already shared: the blocks cannot be re-homed; keep the reservation beside them.
            Err(inner) => {
                let held = Held { chunks: inner.chunks.clone(), len: inner.len, _reservation: Some(reservation) };
                Self { inner: Arc::new(held) }
            }
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// How many blocks hold it.
    pub fn blocks(&self) -> usize {
        self.inner.chunks.len()
    }

    /// Its first `n` bytes (fewer if it is shorter): in place when the first block holds them.
    pub fn head(&self, n: usize) -> std::borrow::Cow<'_, [u8]> {
        let n = n.min(self.inner.len);
        match self.inner.chunks.first() {
            Some(first) if first.len() >= n => std::borrow::Cow::Borrowed(&first[..n]),
            _ => {
                let mut out = Vec::with_capacity(n);
                for c in &self.inner.chunks {
                    let take = (n - out.len()).min(c.len());
                    out.extend_from_slice(&c[..take]);
                    if out.len() == n {
                        break;
                    }
                }
                std::borrow::Cow::Owned(out)
            }
        }
    }

    /// The body as one buffer: in place when it is one block, a copy otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match self.inner.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }

    /// A stream of its blocks, of known length (so a request or response sent with it has a
    /// `Content-Length`). It shares the blocks, and holds the body's reservation until dropped.
    pub fn stream(&self) -> BodyStream {
        BodyStream { inner: self.inner.clone(), next: 0 }
    }
}

impl From<Bytes> for JobBody {
    fn from(b: Bytes) -> Self {
        Self::from_chunks(vec![b])
    }
}

/// A [`JobBody`] being sent (upstream to an orchestrator, or back to the client).
#[derive(Debug)]
pub struct BodyStream {
    inner: Arc<Held>,
    next: usize,
}

impl MessageBody for BodyStream {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.inner.len as u64)
    }

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let chunk = this.inner.chunks.get(this.next).cloned();
        this.next += 1;
        Poll::Ready(chunk.map(Ok))
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // Handing out the bytes would drop the reservation while they are still being sent, so
        // only a body without one (a request body: its job holds it) goes out in one piece.
        match (self.inner.chunks.as_slice(), &self.inner._reservation) {
            ([one], None) if self.next == 0 => Ok(one.clone()),
            _ => Err(self),
        }
    }
}

/// Builds a [`JobBody`] from chunks as they arrive, copying them into blocks (see the module
/// documentation). Blocks of a body whose length is declared are sized to fit it exactly;
/// those of a body of unknown length start at [`MIN_BLOCK`] and double up to [`MAX_BLOCK`].
#[derive(Debug)]
pub struct BodyBuilder {
    chunks: Vec<Bytes>,
    /// The block being filled (its filled part not yet in `chunks`).
    block: BytesMut,
    /// A first chunk kept as it came, copied only if a second one follows.
    pending: Option<Bytes>,
    /// Bytes received.
    len: usize,
    /// Bytes copied into blocks.
    copied: usize,
    /// Capacity of every block allocated.
    allocated: usize,
    declared: Option<usize>,
    keep_single: bool,
}

impl BodyBuilder {
    /// A builder for a body of `declared` length (its `Content-Length`), if known. With
    /// `keep_single`, a body that arrives as one chunk is kept as it came instead of copied.
    pub fn new(declared: Option<usize>, keep_single: bool) -> Self {
        Self {
            chunks: Vec::new(),
            block: BytesMut::new(),
            pending: None,
            len: 0,
            copied: 0,
            allocated: 0,
            declared,
            keep_single,
        }
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it holds now: its blocks' capacity, or the length of a chunk kept as it came.
    pub fn charged(&self) -> usize {
        self.allocated + self.pending.as_ref().map_or(0, Bytes::len)
    }

    /// What [`charged`](Self::charged) will be once a chunk of `n` bytes is pushed, computed
    /// before anything is allocated (so a budget can refuse the bytes first).
    pub fn charge_after(&self, n: usize) -> usize {
        if n == 0 {
            return self.charged();
        }
        if self.keeps_next() {
            return n;
        }
        let mut need = n + self.pending.as_ref().map_or(0, Bytes::len);
        let fits = need.min(self.block.capacity() - self.block.len());
        let (mut copied, mut allocated) = (self.copied + fits, self.allocated);
        need -= fits;
        while need > 0 {
            let size = block_size(self.declared, copied, allocated);
            allocated += size;
            let t = size.min(need);
            copied += t;
            need -= t;
        }
        allocated
    }

    /// Adds the next chunk.
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if self.keeps_next() {
            self.len = chunk.len();
            self.pending = Some(chunk);
            return;
        }
        self.len += chunk.len();
        if let Some(first) = self.pending.take() {
            self.copy(&first);
        }
        self.copy(&chunk);
    }

    /// The body.
    pub fn finish(mut self) -> JobBody {
        if let Some(only) = self.pending.take() {
            return JobBody::from_chunks(vec![only]);
        }
        if !self.block.is_empty() {
            self.chunks.push(self.block.split().freeze());
        }
        JobBody { inner: Arc::new(Held { chunks: self.chunks, len: self.len, _reservation: None }) }
    }

    /// Whether the next chunk is kept as it came (it would be the first).
    fn keeps_next(&self) -> bool {
        self.keep_single && self.len == 0
    }

    fn copy(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.block.len() == self.block.capacity() {
                if !self.block.is_empty() {
                    self.chunks.push(self.block.split().freeze());
                }
                let size = block_size(self.declared, self.copied, self.allocated);
                self.block = BytesMut::with_capacity(size);
                self.allocated += self.block.capacity();
            }
            let t = (self.block.capacity() - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..t]);
            self.copied += t;
            data = &data[t..];
        }
    }
}

/// The next block's size: what a declared length still needs (up to [`MAX_BLOCK`]), or, for
/// an unknown length, as much as the blocks so far (from [`MIN_BLOCK`] up to [`MAX_BLOCK`]), so
/// that at most about half of a small body's last block is spare.
fn block_size(declared: Option<usize>, copied: usize, allocated: usize) -> usize {
    match declared {
        Some(d) if d > copied => (d - copied).min(MAX_BLOCK),
        _ => allocated.clamp(MIN_BLOCK, MAX_BLOCK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(declared: Option<usize>, keep: bool, chunks: &[&[u8]]) -> (BodyBuilder, Vec<usize>) {
        let mut b = BodyBuilder::new(declared, keep);
        let mut charges = Vec::new();
        for c in chunks {
            let expected = b.charge_after(c.len());
            b.push(Bytes::copy_from_slice(c));
            assert_eq!(b.charged(), expected, "charge_after predicts what push allocates");
            charges.push(expected);
        }
        (b, charges)
    }

    #[test]
    fn chunks_keep_their_bytes_and_length() {
        let b = JobBody::from_chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cde")]);
        assert_eq!((b.len(), b.to_bytes()), (5, Bytes::from_static(b"abcde")));
        assert_eq!(b.stream().size(), BodySize::Sized(5));
        assert_eq!(&*b.head(3), b"abc");
        assert_eq!(&*b.head(9), b"abcde");
        let one = JobBody::from(Bytes::from_static(b"xyz"));
        assert_eq!(one.stream().size(), BodySize::Sized(3));
        assert!(JobBody::default().is_empty());
    }

    #[test]
    fn one_byte_chunks_end_up_in_a_few_blocks_charged_at_their_real_size() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        let (b, charges) = build(None, true, &chunks);
        let charged = *charges.last().expect("pushed");
        assert!(charged >= data.len() && charged <= data.len() + MAX_BLOCK, "{charged}");
        let body = b.finish();
        assert_eq!(body.to_bytes(), Bytes::from(data.clone()));
        assert!(body.blocks() <= data.len() / MAX_BLOCK + 8, "{} blocks", body.blocks());
    }

    #[test]
    fn a_declared_length_is_held_exactly() {
        let data = vec![7u8; 300_000];
        let chunks: Vec<&[u8]> = data.chunks(8192).collect();
        let (b, charges) = build(Some(data.len()), true, &chunks);
        assert_eq!(*charges.last().expect("pushed"), data.len(), "no spare capacity");
        assert_eq!(b.finish().to_bytes(), Bytes::from(data));
    }

    #[test]
    fn a_single_chunk_is_kept_as_it_came_unless_asked_to_copy() {
        let (b, charges) = build(Some(5), true, &[b"hello"]);
        assert_eq!(charges, [5]);
        assert_eq!(b.finish().blocks(), 1);
        let (b, charges) = build(None, false, &[b"hello"]);
        assert_eq!(charges, [MIN_BLOCK]);
        assert_eq!(b.finish().to_bytes(), Bytes::from_static(b"hello"));
        // A second chunk: the first is copied too, and its own charge replaced.
        let (b, charges) = build(None, true, &[b"hello", b" world"]);
        assert_eq!(charges, [5, MIN_BLOCK]);
        assert_eq!(b.finish().to_bytes(), Bytes::from_static(b"hello world"));
    }

    #[test]
    fn any_chunking_is_charged_what_it_allocates() {
        // Sizes around the block boundaries, in an irregular pattern.
        let sizes = [1usize, 4095, 4097, 1, 65_535, 65_537, 3, 131_072, 7, 10_000];
        let data: Vec<u8> = (0..sizes.iter().sum::<usize>()).map(|i| (i % 251) as u8).collect();
        for declared in [None, Some(data.len())] {
            let mut chunks = Vec::new();
            let mut at = 0;
            for s in sizes {
                chunks.push(&data[at..at + s]);
                at += s;
            }
            let (b, charges) = build(declared, true, &chunks);
            let charged = *charges.last().expect("pushed");
            assert!(charged <= data.len() + MAX_BLOCK, "{declared:?}: {charged}");
            assert_eq!(b.finish().to_bytes(), Bytes::from(data.clone()), "{declared:?}");
        }
    }

    #[test]
    fn a_stream_shares_the_blocks_and_holds_the_reservation() {
        let budget = crate::memory::ByteBudget::new(100, "test_bytes");
        let mut r = Reservation::new(&budget);
        assert!(r.try_grow(10));
        let body = JobBody::from_chunks(vec![Bytes::from_static(b"0123456789")]).hold(r);
        let mut stream = body.stream();
        drop(body);
        assert_eq!(budget.used(), 10, "held while a stream of it lives");
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let first = Pin::new(&mut stream).poll_next(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(Ok(ref b))) if b.len() == 10));
        assert!(matches!(Pin::new(&mut stream).poll_next(&mut cx), Poll::Ready(None)));
        drop(stream);
        assert_eq!(budget.used(), 0);
    }
}
