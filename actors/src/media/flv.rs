//! Writing RTMP media messages as an FLV byte stream (the container ffmpeg reads on its stdin for
//! the remux to MPEG-TS). RTMP audio and video messages carry FLV tag bodies as they are, so this
//! is the FLV header and an 11-byte tag header per message. Pure, unit-tested.

use bytes::{BufMut, Bytes, BytesMut};

/// FLV tag types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Audio (8).
    Audio,
    /// Video (9).
    Video,
}

/// The file header (audio and video present) and the first "previous tag size" (0).
pub fn header() -> Bytes {
    Bytes::from_static(&[b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// Largest tag body FLV can carry (a 24-bit size).
pub const MAX_TAG: usize = (1 << 24) - 1;

/// One tag with its trailing "previous tag size"; `None` when `data` is over [`MAX_TAG`].
pub fn tag(kind: Tag, timestamp_ms: u32, data: &[u8]) -> Option<Bytes> {
    if data.len() > MAX_TAG {
        return None;
    }
    let mut b = BytesMut::with_capacity(11 + data.len() + 4);
    b.put_u8(match kind {
        Tag::Audio => 8,
        Tag::Video => 9,
    });
    let len = data.len() as u32;
    b.put_slice(&len.to_be_bytes()[1..]);
    b.put_slice(&timestamp_ms.to_be_bytes()[1..]);
    b.put_u8((timestamp_ms >> 24) as u8);
    b.put_slice(&[0, 0, 0]);
    b.put_slice(data);
    b.put_u32(11 + len);
    Some(b.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_laid_out_as_flv_says() {
        let t = tag(Tag::Video, 0x0102_0304, &[0x17, 0, 0, 0, 0]).expect("small");
        assert_eq!(&t[..11], &[9, 0, 0, 5, 0x02, 0x03, 0x04, 0x01, 0, 0, 0]);
        assert_eq!(&t[11..16], &[0x17, 0, 0, 0, 0]);
        assert_eq!(&t[16..], &16u32.to_be_bytes());
        assert_eq!(header().len(), 13);
        assert!(tag(Tag::Audio, 0, &vec![0; MAX_TAG + 1]).is_none());
    }
}
