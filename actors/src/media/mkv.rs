//! A live Matroska byte stream of H.264 (AVCC) and Opus, the container a WHIP session's media is
//! written in for ffmpeg's remux to MPEG-TS: FLV, RTMP's, cannot carry Opus for ffmpeg 5. Only
//! what a streaming reader needs (Matroska spec, RFC 9559): the EBML header, a Segment and
//! Clusters of unknown size, Info, Tracks (the `AVCDecoderConfigurationRecord` and `OpusHead` as
//! codec private data) and SimpleBlocks. Container framing only; pure, unit-tested.

/// Element ids.
const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// The "unknown size" of a live Segment or Cluster.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// The two tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Track {
    /// H.264, track 1.
    Video,
    /// Opus, track 2.
    Audio,
}

impl Track {
    fn number(self) -> u8 {
        match self {
            Track::Video => 1,
            Track::Audio => 2,
        }
    }
}

fn id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// An element size as an 8-byte EBML variable-length integer (always valid, never "unknown").
fn size(out: &mut Vec<u8>, n: usize) {
    let n = (n as u64).min((1 << 56) - 2);
    out.push(0x01);
    out.extend_from_slice(&n.to_be_bytes()[1..]);
}

fn element(out: &mut Vec<u8>, i: u32, body: &[u8]) {
    id(out, i);
    size(out, body.len());
    out.extend_from_slice(body);
}

fn uint(out: &mut Vec<u8>, i: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    element(out, i, &bytes[skip..]);
}

/// The stream's start: the EBML header, the Segment (unknown size), Info and Tracks. `avc_config`
/// is the video's `AVCDecoderConfigurationRecord`; `audio` declares the Opus track.
pub(crate) fn header(avc_config: &[u8], audio: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + avc_config.len());
    let mut ebml = Vec::new();
    uint(&mut ebml, EBML_VERSION, 1);
    uint(&mut ebml, EBML_READ_VERSION, 1);
    uint(&mut ebml, EBML_MAX_ID_LENGTH, 4);
    uint(&mut ebml, EBML_MAX_SIZE_LENGTH, 8);
    element(&mut ebml, DOC_TYPE, b"matroska");
    uint(&mut ebml, DOC_TYPE_VERSION, 4);
    uint(&mut ebml, DOC_TYPE_READ_VERSION, 2);
    element(&mut out, EBML, &ebml);
    id(&mut out, SEGMENT);
    out.extend_from_slice(&UNKNOWN_SIZE);
    let mut info = Vec::new();
    // Block timestamps in milliseconds.
    uint(&mut info, TIMESTAMP_SCALE, 1_000_000);
    element(&mut info, MUXING_APP, b"byoc-gateway");
    element(&mut info, WRITING_APP, b"byoc-gateway");
    element(&mut out, INFO, &info);
    let mut tracks = Vec::new();
    let mut video = Vec::new();
    uint(&mut video, TRACK_NUMBER, 1);
    uint(&mut video, TRACK_UID, 1);
    uint(&mut video, TRACK_TYPE, 1);
    element(&mut video, CODEC_ID, b"V_MPEG4/ISO/AVC");
    element(&mut video, CODEC_PRIVATE, avc_config);
    element(&mut tracks, TRACK_ENTRY, &video);
    if audio {
        let mut a = Vec::new();
        uint(&mut a, TRACK_NUMBER, 2);
        uint(&mut a, TRACK_UID, 2);
        uint(&mut a, TRACK_TYPE, 2);
        element(&mut a, CODEC_ID, b"A_OPUS");
        element(&mut a, CODEC_PRIVATE, &opus_head());
        let mut settings = Vec::new();
        element(&mut settings, SAMPLING_FREQUENCY, &48_000f64.to_be_bytes());
        uint(&mut settings, CHANNELS, 2);
        element(&mut a, AUDIO, &settings);
        element(&mut tracks, TRACK_ENTRY, &a);
    }
    element(&mut out, TRACKS, &tracks);
    out
}

/// RFC 7845's identification header: WebRTC's Opus is 48 kHz, two channels as SDP declares it,
/// no pre-skip (RTP carries none), mapping family 0.
fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.extend_from_slice(&[1, 2]);
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// The blocks after the header: opens a Cluster at each video keyframe and whenever a block's
/// timestamp would not fit the 16-bit offset from its Cluster's.
#[derive(Debug, Default)]
pub(crate) struct Clusters {
    start_ms: Option<u64>,
}

impl Clusters {
    /// One frame of `track` at `ms` (milliseconds from the stream's start).
    pub(crate) fn block(&mut self, track: Track, ms: u64, keyframe: bool, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 32);
        let offset = self.start_ms.map(|s| ms as i64 - s as i64);
        let fits = offset.is_some_and(|o| (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&o));
        if (track == Track::Video && keyframe) || !fits {
            id(&mut out, CLUSTER);
            out.extend_from_slice(&UNKNOWN_SIZE);
            uint(&mut out, TIMESTAMP, ms);
            self.start_ms = Some(ms);
        }
        let rel = (ms as i64 - self.start_ms.unwrap_or(ms) as i64) as i16;
        id(&mut out, SIMPLE_BLOCK);
        size(&mut out, 4 + data.len());
        // The track number as a 1-byte EBML integer, the offset, the flags (keyframe).
        out.push(0x80 | track.number());
        out.extend_from_slice(&rel.to_be_bytes());
        out.push(if keyframe || track == Track::Audio { 0x80 } else { 0 });
        out.extend_from_slice(data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_declares_the_tracks_with_their_private_data() {
        let h = header(&[1, 0x42, 0xc0, 0x1f], true);
        assert_eq!(&h[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
        let find = |needle: &[u8]| h.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"matroska") && find(b"V_MPEG4/ISO/AVC") && find(b"A_OPUS") && find(b"OpusHead"));
        // The Segment is live: unknown size.
        assert!(find(&[0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]));
        // The AVC record follows CodecPrivate's id and its 8-byte size.
        assert!(find(&[0x63, 0xA2, 0x01, 0, 0, 0, 0, 0, 0, 4, 1, 0x42, 0xc0, 0x1f]));
        assert!(!header(&[1], false).windows(6).any(|w| w == b"A_OPUS"));
        assert_eq!(opus_head().len(), 19);
    }

    #[test]
    fn keyframes_and_far_timestamps_open_clusters() {
        let mut c = Clusters::default();
        let first = c.block(Track::Video, 0, true, b"idr");
        assert_eq!(&first[..4], &[0x1F, 0x43, 0xB6, 0x75]);
        // The block: id, 8-byte size (4 + 3), track 1, offset 0, keyframe.
        assert!(first.ends_with(&[0xA3, 1, 0, 0, 0, 0, 0, 0, 7, 0x81, 0, 0, 0x80, b'i', b'd', b'r']));
        let audio = c.block(Track::Audio, 20, false, b"op");
        assert_eq!(&audio[..12], &[0xA3, 1, 0, 0, 0, 0, 0, 0, 6, 0x82, 0, 20], "in the same cluster");
        let inter = c.block(Track::Video, 33, false, b"p");
        assert_eq!(inter[0], 0xA3);
        assert_eq!(inter[12], 0, "not a keyframe");
        let far = c.block(Track::Video, 40_000, false, b"p");
        assert_eq!(&far[..4], &[0x1F, 0x43, 0xB6, 0x75], "a new cluster past 32.767 s");
        let key = c.block(Track::Video, 40_100, true, b"k");
        assert_eq!(&key[..4], &[0x1F, 0x43, 0xB6, 0x75]);
        // Audio slightly before its cluster's start: a negative offset.
        let early = c.block(Track::Audio, 40_090, false, b"a");
        assert_eq!(&early[10..12], &(-10i16).to_be_bytes());
    }
}
