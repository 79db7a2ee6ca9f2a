//! A job's request body, kept as it arrived (the chunks the HTTP server read) so that it is
//! held once and replayed on every attempt without a copy: a large body is never joined into
//! one buffer, and it goes upstream chunk by chunk, so the client library copies one chunk at a
//! time into its write buffer instead of the whole body.

use std::convert::Infallible;

use awc::body::{BoxBody, MessageBody, SizedStream};
use bytes::Bytes;

/// A job's body: its chunks and their total length.
#[derive(Debug, Clone, Default)]
pub struct JobBody {
    chunks: Vec<Bytes>,
    len: usize,
}

impl JobBody {
    /// A body of these chunks, in order.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Self {
        let len = chunks.iter().map(Bytes::len).sum();
        Self { chunks, len }
    }

    /// Its length in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body as one buffer (a copy when it has several chunks).
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }

    /// What the upstream request sends: one buffer as is, several chunks as a stream of known
    /// length (so the request still has a `Content-Length`).
    pub(crate) fn upstream(&self) -> BoxBody {
        match self.chunks.as_slice() {
            [] => Bytes::new().boxed(),
            [one] => one.clone().boxed(),
            many => {
                // Owned (reference-counted) chunks: the request outlives this borrow.
                let owned: Vec<Bytes> = many.to_vec();
                let chunks = futures_util::stream::iter(owned.into_iter().map(Ok::<Bytes, Infallible>));
                SizedStream::new(self.len as u64, chunks).boxed()
            }
        }
    }
}

impl From<Bytes> for JobBody {
    fn from(b: Bytes) -> Self {
        Self::from_chunks(vec![b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_their_bytes_and_length() {
        let b = JobBody::from_chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cde")]);
        assert_eq!((b.len(), b.to_bytes()), (5, Bytes::from_static(b"abcde")));
        assert_eq!(b.upstream().size(), awc::body::BodySize::Sized(5));
        let one = JobBody::from(Bytes::from_static(b"xyz"));
        assert_eq!(one.upstream().size(), awc::body::BodySize::Sized(3));
        assert!(JobBody::default().is_empty());
    }
}
