//! H.264 access units as WebRTC delivers them (Annex B: NAL units after start codes, as str0m
//! depacketizes them) turned into the form FLV and Matroska carry (AVCC: each NAL unit after its
//! 4-byte length, and an `AVCDecoderConfigurationRecord` built from the SPS and PPS), for the
//! WHIP ingest's Matroska (`mkv.rs`). Container framing only: no NAL unit is parsed beyond its
//! type and the SPS's first three bytes (profile, constraints, level).

/// NAL unit types looked at.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), empty ones skipped.
pub(crate) fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // The next start code begins 3 bytes before its payload, or 4 with a leading zero.
            let mut e = s - 3;
            if e > 0 && data[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts.into_iter().zip(ends).filter(|&(s, e)| e > s).map(move |(s, e)| &data[s..e])
}

/// One access unit in AVCC form.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Frame {
    /// A new `AVCDecoderConfigurationRecord`, when this unit's SPS or PPS differ from the last.
    pub(crate) config: Option<Vec<u8>>,
    /// The NAL units, each after its 4-byte big-endian length (access unit delimiters dropped).
    pub(crate) avcc: Vec<u8>,
    /// Whether it holds an IDR slice.
    pub(crate) keyframe: bool,
}

/// The parameter sets seen so far, to tell when a new decoder configuration is due.
#[derive(Debug, Default)]
pub(crate) struct Avc {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    configured: bool,
}

impl Avc {
    /// Converts one Annex B access unit.
    pub(crate) fn frame(&mut self, annexb: &[u8]) -> Frame {
        let mut frame = Frame::default();
        let mut changed = false;
        for nal in nal_units(annexb) {
            let kind = nal[0] & 0x1f;
            match kind {
                NAL_AUD => continue,
                NAL_SPS if self.sps.as_deref() != Some(nal) => {
                    self.sps = Some(nal.to_vec());
                    changed = true;
                }
                NAL_PPS if self.pps.as_deref() != Some(nal) => {
                    self.pps = Some(nal.to_vec());
                    changed = true;
                }
                NAL_IDR => frame.keyframe = true,
                _ => {}
            }
            // Parameter sets stay in band too: a decoder joining at this keyframe needs them.
            frame.avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            frame.avcc.extend_from_slice(nal);
        }
        if changed || !self.configured {
            frame.config = self.record();
            self.configured |= frame.config.is_some();
        }
        frame
    }

    /// The `AVCDecoderConfigurationRecord` (ISO 14496-15 §5.2.4.1) of the current SPS and PPS,
    /// once both were seen.
    fn record(&self) -> Option<Vec<u8>> {
        let (sps, pps) = (self.sps.as_ref()?, self.pps.as_ref()?);
        if sps.len() < 4 || sps.len() > usize::from(u16::MAX) || pps.len() > usize::from(u16::MAX) {
            return None;
        }
        let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        r.extend_from_slice(sps);
        r.push(1);
        r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        r.extend_from_slice(pps);
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00];
    const SLICE: &[u8] = &[0x41, 0x9a, 0x02];

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            // Both start code lengths.
            v.extend_from_slice(if i % 2 == 0 { &[0, 0, 0, 1][..] } else { &[0, 0, 1][..] });
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn nal_units_split_on_either_start_code() {
        let au = annexb(&[SPS, PPS, IDR]);
        assert_eq!(nal_units(&au).collect::<Vec<_>>(), vec![SPS, PPS, IDR]);
        assert_eq!(nal_units(&[0, 0, 0, 1]).count(), 0);
        assert_eq!(nal_units(&[]).count(), 0);
    }

    #[test]
    fn a_keyframe_brings_the_decoder_configuration_once() {
        let mut avc = Avc::default();
        let first = avc.frame(&annexb(&[&[0x09, 0xf0], SPS, PPS, IDR]));
        assert!(first.keyframe);
        let record = first.config.expect("a configuration at the first SPS and PPS");
        assert_eq!(&record[..6], &[1, 0x42, 0xc0, 0x1f, 0xff, 0xe1]);
        assert_eq!(&record[6..8], &(SPS.len() as u16).to_be_bytes());
        assert_eq!(&record[8..8 + SPS.len()], SPS);
        assert_eq!(record[8 + SPS.len()], 1);
        assert_eq!(&record[record.len() - PPS.len()..], PPS);
        // The access unit delimiter is dropped; the rest length-prefixed.
        let mut want = Vec::new();
        for n in [SPS, PPS, IDR] {
            want.extend_from_slice(&(n.len() as u32).to_be_bytes());
            want.extend_from_slice(n);
        }
        assert_eq!(first.avcc, want);

        let inter = avc.frame(&annexb(&[SLICE]));
        assert!(!inter.keyframe && inter.config.is_none());
        // The same parameter sets again: no new configuration.
        assert!(avc.frame(&annexb(&[SPS, PPS, IDR])).config.is_none());
        // A new SPS (a resolution change): a new one.
        let sps2: &[u8] = &[0x67, 0x42, 0xc0, 0x28, 0x01];
        assert!(avc.frame(&annexb(&[sps2, PPS, IDR])).config.is_some());
    }

    #[test]
    fn no_configuration_before_both_parameter_sets() {
        let mut avc = Avc::default();
        assert!(avc.frame(&annexb(&[SLICE])).config.is_none());
        assert!(avc.frame(&annexb(&[SPS, SLICE])).config.is_none());
        assert!(avc.frame(&annexb(&[PPS, IDR])).config.is_some());
        // A truncated SPS never makes a record.
        let mut bad = Avc::default();
        assert!(bad.frame(&annexb(&[&[0x67, 0x42], PPS, IDR])).config.is_none());
    }
}
