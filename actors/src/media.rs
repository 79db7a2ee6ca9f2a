//! A stream's media edges beyond trickle: RTMP ingest (OBS, ffmpeg) and WHIP ingest (browsers)
//! remuxed to MPEG-TS segments cut at keyframes on the stream's ingress channel, and RTMP outputs
//! fed from its egress channel.
//! A module tree beside [`stream`](crate::stream), which it only uses (the stream core knows
//! nothing of RTMP): it writes and reads the same segment channels as the trickle endpoints, so
//! swaps, payments and the health model do not change, and a swap is a gap here too (the
//! publisher and the outputs stay connected to the gateway).
//!
//! The gateway never decodes video (as go-livepeer, §3.4): `rtmp.rs` speaks RTMP with `rml_rtmp`
//! (handshake, chunking, the publish request, refused at once for an unknown or ended stream),
//! `flv.rs` writes its media messages as FLV, ffmpeg (`ffmpeg.rs`) remuxes that to MPEG-TS
//! (`-c copy`), `ts.rs` cuts it at keyframes (`ingest.rs` puts the segments on the channel), and
//! `output.rs` runs one ffmpeg per RTMP destination (MPEG-TS in, FLV out, `-c copy`), restarted
//! with back-off when the destination drops. `whip.rs` and `whip/` take WebRTC with `str0m` (ICE
//! lite, DTLS, SRTP, depacketized H.264 and Opus), `avc.rs` and `mkv.rs` write them as Matroska,
//! and they go through the same ingest as RTMP's.

mod avc;
mod ffmpeg;
mod flv;
mod ingest;
mod mkv;
mod output;
mod rtmp;
pub mod ts;
mod whip;

pub use output::start_outputs;
pub use rtmp::serve_rtmp;
pub use whip::{Whip, WhipAnswer, WhipError};
