//! Fuzzes the client's `Livepeer` header decoder with arbitrary header bytes (normally base64
//! of the job JSON; see `header_json` for a target that fuzzes the JSON itself).
//!
//! Checked on every input (see `common::check_header`): `decode_client_header` never panics;
//! an accepted job has a valid capability and `timeout_seconds` in 1..=86400; re-encoding it
//! and decoding again gives the same capability, timeout and job.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::check_header(data));
