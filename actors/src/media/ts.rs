//! Cutting a continuous MPEG-TS byte stream into segments that each begin at a video keyframe,
//! as go-livepeer's `ffmpeg -f segment` does for its RTMP ingest (§3.4): every segment starts with
//! the PAT and PMT and then a keyframe, so a runner can decode it on its own. Pure: bytes in,
//! [`Piece`]s out, no I/O. Only the container is read (packet headers, the PAT and PMT, the PES
//! header's PTS); no video is decoded.
//!
//! Bytes are handed on as they come (a segment streams to the orchestrator while it grows), except
//! a run of PAT/PMT packets, held back until the next packet tells whether a segment starts there.

use bytes::{Bytes, BytesMut};

/// An MPEG-TS packet's size.
pub const PACKET: usize = 188;
const SYNC: u8 = 0x47;
const PAT_PID: u16 = 0;
/// The 90 kHz clock of PTS values.
const PTS_HZ: u64 = 90_000;

/// What the cutter hands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A new segment starts here (the bytes after it belong to it).
    Cut,
    /// Bytes of the current segment.
    Data(Bytes),
}

/// The cutter's state for one stream.
#[derive(Debug)]
pub struct Cutter {
    /// The shortest segment, in 90 kHz ticks: a keyframe sooner than this after the segment's
    /// first one does not cut.
    min_ticks: u64,
    /// Bytes of an incomplete packet.
    partial: Vec<u8>,
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    /// The latest PAT and PMT packets, put at the head of a segment that starts without them.
    last_pat: Option<Bytes>,
    last_pmt: Option<Bytes>,
    /// PAT/PMT packets just seen, not handed on yet.
    held: BytesMut,
    /// The first keyframe's PTS of the current segment (`None` before the first keyframe).
    segment_pts: Option<u64>,
    /// Packets dropped before the first keyframe or out of sync.
    pub dropped_packets: u64,
}

impl Cutter {
    /// A cutter that starts a segment at a keyframe once the current one holds at least
    /// `min_seconds` of video.
    pub fn new(min_seconds: f64) -> Self {
        Self {
            min_ticks: (min_seconds.max(0.0) * PTS_HZ as f64) as u64,
            partial: Vec::with_capacity(PACKET),
            pmt_pid: None,
            video_pid: None,
            last_pat: None,
            last_pmt: None,
            held: BytesMut::new(),
            segment_pts: None,
            dropped_packets: 0,
        }
    }

    /// Whether a segment has begun (a keyframe was seen).
    pub fn started(&self) -> bool {
        self.segment_pts.is_some()
    }

    /// Takes the next bytes of the stream; returns what to hand on, in order.
    pub fn push(&mut self, mut input: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut run = BytesMut::new();
        if !self.partial.is_empty() {
            let need = PACKET - self.partial.len();
            let take = need.min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.partial.len() == PACKET {
                let p = std::mem::take(&mut self.partial);
                self.packet(&p, &mut run, &mut out);
            }
        }
        while input.len() >= PACKET {
            if input[0] != SYNC {
                // Out of sync: skip to the next sync byte.
                let skip = input.iter().position(|&b| b == SYNC).unwrap_or(input.len());
                input = &input[skip..];
                self.dropped_packets += 1;
                continue;
            }
            let (p, rest) = input.split_at(PACKET);
            self.packet(p, &mut run, &mut out);
            input = rest;
        }
        if !input.is_empty() {
            self.partial.extend_from_slice(input);
        }
        if !run.is_empty() {
            out.push(Piece::Data(run.freeze()));
        }
        out
    }

    fn packet(&mut self, p: &[u8], run: &mut BytesMut, out: &mut Vec<Piece>) {
        if p[0] != SYNC {
            self.dropped_packets += 1;
            return;
        }
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let pusi = p[1] & 0x40 != 0;
        if pid == PAT_PID || Some(pid) == self.pmt_pid {
            if pusi {
                self.psi(pid, p);
            }
            self.held.extend_from_slice(p);
            return;
        }
        if Some(pid) == self.video_pid && pusi && random_access(p) {
            let pts = pes_pts(p);
            let cut = match (self.segment_pts, pts) {
                (None, _) => true,
                (Some(start), Some(now)) => now.wrapping_sub(start) & ((1 << 33) - 1) >= self.min_ticks,
                (Some(_), None) => true,
            };
            if cut {
                if !run.is_empty() {
                    out.push(Piece::Data(std::mem::take(run).freeze()));
                }
                out.push(Piece::Cut);
                self.segment_pts = Some(pts.unwrap_or(0));
                if self.held.is_empty() {
                    if let (Some(pat), Some(pmt)) = (&self.last_pat, &self.last_pmt) {
                        run.extend_from_slice(pat);
                        run.extend_from_slice(pmt);
                    }
                }
            }
        }
        if self.segment_pts.is_none() {
            // Nothing before the first keyframe is of use to a decoder.
            self.held.clear();
            self.dropped_packets += 1;
            return;
        }
        if !self.held.is_empty() {
            run.extend_from_slice(&self.held);
            self.held.clear();
        }
        run.extend_from_slice(p);
    }

    /// Reads a PAT (the PMT's PID) or a PMT (the first video stream's PID).
    fn psi(&mut self, pid: u16, p: &[u8]) {
        let Some(section) = section(p) else { return };
        if pid == PAT_PID {
            self.last_pat = Some(Bytes::copy_from_slice(p));
            if let Some(pmt) = pmt_pid(section) {
                self.pmt_pid = Some(pmt);
            }
        } else {
            self.last_pmt = Some(Bytes::copy_from_slice(p));
            if let Some((_, pid)) = pmt_streams(section).into_iter().find(|(t, _)| is_video(*t)) {
                self.video_pid = Some(pid);
            }
        }
    }
}

/// The PMT's PID in a PAT section: its first program's.
fn pmt_pid(section: &[u8]) -> Option<u16> {
    // table_id, length (2), ts id (2), version (1), section numbers (2), then programs.
    let programs = section.get(8..section.len().saturating_sub(4)).unwrap_or(&[]);
    programs
        .chunks_exact(4)
        .find(|prog| u16::from_be_bytes([prog[0], prog[1]]) != 0)
        .map(|prog| (u16::from(prog[2] & 0x1f) << 8) | u16::from(prog[3]))
}

/// The elementary streams a PMT section declares: (stream type, PID).
fn pmt_streams(section: &[u8]) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    let Some(info_len) = section.get(10..12).map(|b| usize::from(b[0] & 0x0f) << 8 | usize::from(b[1])) else {
        return out;
    };
    let end = section.len().saturating_sub(4);
    let mut i = 12 + info_len;
    while i + 5 <= end {
        let stream_type = section[i];
        let es_pid = (u16::from(section[i + 1] & 0x1f) << 8) | u16::from(section[i + 2]);
        let es_info = usize::from(section[i + 3] & 0x0f) << 8 | usize::from(section[i + 4]);
        out.push((stream_type, es_pid));
        i += 5 + es_info;
    }
    out
}

/// Whether the audio of a segment is AAC only (or absent), read from the PAT and PMT at its head;
/// `None` until both were read. An RTMP output passes such audio through and re-encodes any other
/// (a WHIP publisher's Opus) to AAC, the one FLV carries.
pub fn audio_is_aac(head: &[u8]) -> Option<bool> {
    let mut pmt = None;
    for p in head.chunks_exact(PACKET) {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        if p[0] != SYNC || p[1] & 0x40 == 0 {
            continue;
        }
        if pid == PAT_PID {
            pmt = section(p).and_then(pmt_pid).or(pmt);
        } else if Some(pid) == pmt {
            let streams = pmt_streams(section(p)?);
            // ADTS and LATM AAC.
            return Some(streams.iter().all(|(t, _)| is_video(*t) || matches!(t, 0x0f | 0x11)));
        }
    }
    None
}

/// H.264, HEVC, MPEG-2 and MPEG-4 video.
fn is_video(stream_type: u8) -> bool {
    matches!(stream_type, 0x01 | 0x02 | 0x10 | 0x1b | 0x24)
}

/// The payload of a packet (after its adaptation field).
fn payload(p: &[u8]) -> Option<&[u8]> {
    let control = (p[3] >> 4) & 0x3;
    match control {
        1 => Some(&p[4..]),
        3 => {
            let len = usize::from(p[4]);
            p.get(5 + len..)
        }
        _ => None,
    }
}

/// The random-access indicator of the adaptation field (ffmpeg sets it on keyframes).
fn random_access(p: &[u8]) -> bool {
    let control = (p[3] >> 4) & 0x3;
    control & 0x2 != 0 && p[4] > 0 && p[5] & 0x40 != 0
}

/// A PSI section whole within this packet (the pointer field skipped, bounded by its length).
fn section(p: &[u8]) -> Option<&[u8]> {
    let data = payload(p)?;
    let pointer = usize::from(*data.first()?);
    let s = data.get(1 + pointer..)?;
    let len = usize::from(*s.get(1)? & 0x0f) << 8 | usize::from(*s.get(2)?);
    s.get(..3 + len)
}

/// The PTS of a PES starting in this packet.
fn pes_pts(p: &[u8]) -> Option<u64> {
    let d = payload(p)?;
    if d.len() < 14 || d[..3] != [0, 0, 1] || d[7] & 0x80 == 0 {
        return None;
    }
    let t = &d[9..14];
    Some(
        (u64::from(t[0] >> 1) & 0x07) << 30
            | u64::from(t[1]) << 22
            | (u64::from(t[2]) >> 1) << 15
            | u64::from(t[3]) << 7
            | u64::from(t[4]) >> 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PMT: u16 = 0x1000;
    const VIDEO: u16 = 0x100;
    const AUDIO: u16 = 0x101;

    fn packet(pid: u16, pusi: bool, adaptation: Option<u8>, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![SYNC, ((pid >> 8) as u8) | if pusi { 0x40 } else { 0 }, pid as u8];
        let mut body = Vec::new();
        match adaptation {
            Some(flags) => {
                p.push(0x30);
                let fill = PACKET - 4 - 2 - payload.len();
                body.push((fill + 1) as u8);
                body.push(flags);
                body.extend(std::iter::repeat_n(0xff, fill));
            }
            None => {
                p.push(0x10);
            }
        }
        body.extend_from_slice(payload);
        body.resize(PACKET - 4, 0xff);
        p.extend(body);
        p
    }

    fn psi(pid: u16, table: &[u8]) -> Vec<u8> {
        let mut s = vec![0u8];
        s.extend_from_slice(table);
        packet(pid, true, None, &s)
    }

    fn pat() -> Vec<u8> {
        // table 0, length 13: ts id, version, numbers, program 1 -> PMT, CRC.
        psi(PAT_PID, &[0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xe0 | (PMT >> 8) as u8, PMT as u8, 0, 0, 0, 0])
    }

    fn pmt() -> Vec<u8> {
        // table 2, length 23: program 1, PCR PID, no program info, video 0x1b, audio 0x0f, CRC.
        psi(
            PMT,
            &[
                0x02, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00, 0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1,
                0x01, 0xf0, 0x00, 0, 0, 0, 0,
            ],
        )
    }

    fn pes(pts: u64) -> Vec<u8> {
        let t = [
            0x21 | (((pts >> 30) as u8 & 0x07) << 1),
            (pts >> 22) as u8,
            (((pts >> 15) as u8) << 1) | 1,
            (pts >> 7) as u8,
            ((pts as u8) << 1) | 1,
        ];
        let mut d = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5];
        d.extend_from_slice(&t);
        d
    }

    fn key(pts_s: f64) -> Vec<u8> {
        packet(VIDEO, true, Some(0x40), &pes((pts_s * 90_000.0) as u64))
    }

    fn frame(pts_s: f64) -> Vec<u8> {
        packet(VIDEO, true, Some(0x00), &pes((pts_s * 90_000.0) as u64))
    }

    fn segments(pieces: &[Piece]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for p in pieces {
            match p {
                Piece::Cut => out.push(Vec::new()),
                Piece::Data(b) => out.last_mut().expect("data after a cut").extend_from_slice(b),
            }
        }
        out
    }

    #[test]
    fn cuts_at_keyframes_with_the_tables_first_and_drops_what_precedes_the_first() {
        let mut stream = Vec::new();
        stream.extend(frame(0.0)); // before any keyframe: dropped
        stream.extend(pat());
        stream.extend(pmt());
        stream.extend(key(0.0));
        stream.extend(frame(0.5));
        stream.extend(packet(AUDIO, true, Some(0x40), &[])); // an audio "keyframe": no cut
        stream.extend(key(1.0)); // under the minimum: no cut
        stream.extend(pat());
        stream.extend(pmt());
        stream.extend(key(2.0)); // cut, before its tables
        stream.extend(frame(2.5));
        stream.extend(key(4.0)); // cut without tables: the last ones are put first
        let mut c = Cutter::new(2.0);
        // In odd-sized pieces, as a pipe hands them over.
        let mut pieces = Vec::new();
        for chunk in stream.chunks(100) {
            pieces.extend(c.push(chunk));
        }
        let segs = segments(&pieces);
        assert_eq!(segs.len(), 3);
        let pids =
            |s: &Vec<u8>| s.chunks(PACKET).map(|p| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])).collect::<Vec<_>>();
        assert_eq!(pids(&segs[0]), vec![0, PMT, VIDEO, VIDEO, AUDIO, VIDEO]);
        assert_eq!(pids(&segs[1]), vec![0, PMT, VIDEO, VIDEO]);
        assert_eq!(pids(&segs[2]), vec![0, PMT, VIDEO]);
        assert_eq!(&segs[2][2 * PACKET..], &key(4.0)[..]);
        assert_eq!(c.dropped_packets, 1);
    }

    #[test]
    fn aac_audio_is_told_from_other_audio_by_the_head_tables() {
        let head = [pat(), pmt(), key(0.0)].concat();
        assert_eq!(audio_is_aac(&head), Some(true));
        assert_eq!(audio_is_aac(&pat()), None, "no PMT yet");
        assert_eq!(audio_is_aac(&[]), None);
        // The same PMT with its audio as private data (Opus): not AAC.
        let mut opus = pmt();
        let at = opus.iter().position(|b| *b == 0x0f).expect("the audio's stream type");
        opus[at] = 0x06;
        assert_eq!(audio_is_aac(&[pat(), opus].concat()), Some(false));
    }

    #[test]
    fn garbage_and_short_input_do_not_panic() {
        let mut c = Cutter::new(1.0);
        assert!(c.push(&[]).is_empty());
        assert!(c.push(&[1, 2, 3]).is_empty());
        assert!(c.push(&[0x47; 1000]).iter().all(|p| matches!(p, Piece::Data(_))));
        let mut bad = pat();
        bad[7] = 0xff; // a section length past the packet
        c.push(&bad);
        assert!(!c.started());
    }
}
