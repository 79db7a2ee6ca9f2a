//! The rule for a worker path, the part of a job's URL after `/process/request/` that the
//! gateway forwards as is: the client's, and a capability's warm-up job's.
//!
//! The path is forwarded byte for byte, so any hop that normalises paths (a proxy in front of
//! the orchestrator, the orchestrator's own router, a servlet container) could resolve a
//! hidden `..` to another of the orchestrator's paths, such as its control routes. A path is
//! refused when any of its segments, at any depth of percent-decoding, is empty, `.` or `..`
//! (also before a `;` parameter, which Tomcat-style servers strip: `..;x` is `..` there), hides
//! a `/`, `\` or NUL, or decodes to bytes that are not UTF-8 (overlong forms such as `%c0%ae`,
//! which lenient decoders read as `.`). A `%` that does not start a `%XX` escape is refused as
//! Go's URL parser refuses it (`%u002e` is an IIS-only dot). Dots and semicolons inside a name
//! (`v1..2`, `a;b`) and other escapes (`caf%C3%A9`, `50%25`) are ordinary.
//!
//! Pure: no allocation unless a segment holds a `%`.

use std::borrow::Cow;

/// Percent-decodings looked through: a segment still changing after this many is refused.
pub const MAX_DECODES: usize = 3;

/// Why a worker path was refused. `Display` completes "the path ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `\` (some servers read it as `/`).
    #[error("contains a backslash")]
    Backslash,
    /// An empty segment (`a//b`, a trailing `/`, or nothing before a `;`).
    #[error("has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment, possibly percent-encoded, encoded twice over or before a `;`.
    #[error("has a '.' or '..' segment (possibly percent-encoded, encoded twice over, or before a ';' parameter)")]
    DotSegment,
    /// A `/`, `\` or NUL hidden in a segment by percent-encoding.
    #[error("has an encoded '/', '\\' or NUL in a segment")]
    EncodedSeparator,
    /// A `%` not followed by two hex digits.
    #[error("has a '%' that does not start a %XX escape")]
    MalformedEscape,
    /// Percent-encoded bytes that are not UTF-8, such as an overlong `.` or `/`.
    #[error("has percent-encoded bytes that are not UTF-8 (such as an overlong '.' or '/')")]
    NotUtf8,
    /// Still percent-encoded after [`MAX_DECODES`] decodings.
    #[error("is percent-encoded more than {MAX_DECODES} times over")]
    TooDeeplyEncoded,
}

/// Checks a worker path (without the leading `/process/request/`).
pub fn check_worker_path(path: &str) -> Result<(), PathError> {
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    path.split('/').try_for_each(check_segment)
}

fn check_segment(raw: &str) -> Result<(), PathError> {
    check_escapes(raw.as_bytes())?;
    check_name(raw.as_bytes())?;
    let mut level: Cow<'_, [u8]> = Cow::Borrowed(raw.as_bytes());
    for _ in 0..MAX_DECODES {
        if !level.contains(&b'%') {
            return Ok(());
        }
        let decoded: Cow<'_, [u8]> = percent_encoding::percent_decode(&level).into();
        if decoded == level {
            // Only `%`s that start no escape (`50%` after `50%25`): nothing more to decode.
            return Ok(());
        }
        let decoded = decoded.into_owned();
        if decoded.iter().any(|&b| matches!(b, b'/' | b'\\' | 0)) {
            return Err(PathError::EncodedSeparator);
        }
        if std::str::from_utf8(&decoded).is_err() {
            return Err(PathError::NotUtf8);
        }
        check_name(&decoded)?;
        level = Cow::Owned(decoded);
    }
    let still_encoded = level.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    if still_encoded {
        return Err(PathError::TooDeeplyEncoded);
    }
    Ok(())
}

/// One decoding of a segment: not empty, `.` or `..`, also before a `;` parameter.
fn check_name(segment: &[u8]) -> Result<(), PathError> {
    let name = segment.split(|&b| b == b';').next().unwrap_or_default();
    match name {
        b"" => Err(PathError::EmptySegment),
        b"." | b".." => Err(PathError::DotSegment),
        _ => Ok(()),
    }
}

/// Every `%` of the segment as received starts a `%XX` escape.
fn check_escapes(raw: &[u8]) -> Result<(), PathError> {
    let mut i = 0;
    while let Some(at) = raw[i..].iter().position(|&b| b == b'%') {
        let p = i + at;
        match raw.get(p + 1..p + 3) {
            Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i = p + 3,
            _ => return Err(PathError::MalformedEscape),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_pass() {
        for p in [
            "depth",
            "depth/v1..2/a.b",
            "depth/a;b/c",
            "depth/caf%C3%A9",
            "depth/50%25",
            "depth/a%2Eb",
            "depth/%2e%2e%2e",
            "depth/...",
            "depth/.hidden",
            "depth/a%2525",
        ] {
            assert_eq!(check_worker_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn hidden_dot_segments_and_separators_are_refused() {
        use PathError::*;
        for (p, why) in [
            ("depth/../_control", DotSegment),
            ("depth/./x", DotSegment),
            ("depth/%2e%2e/x", DotSegment),
            ("depth/.%2E/x", DotSegment),
            ("depth/..;/x", DotSegment),
            ("depth/..;jsessionid=1/x", DotSegment),
            ("depth/.;x", DotSegment),
            ("depth/%2e%2e;x", DotSegment),
            ("depth/%252e%252e/x", DotSegment),
            ("depth/%25252e%25252e/x", DotSegment),
            ("depth/%2e%2e%3bx/y", DotSegment),
            ("depth/%252E%252E%252F_control", EncodedSeparator),
            ("depth/a%2fb", EncodedSeparator),
            ("depth/a%5cb", EncodedSeparator),
            ("depth/a%00b", EncodedSeparator),
            ("depth/a%252fb", EncodedSeparator),
            ("depth/%c0%ae%c0%ae/x", NotUtf8),
            ("depth/%e0%80%ae/x", NotUtf8),
            ("depth/%f0%80%80%ae/x", NotUtf8),
            ("depth/a%c0%afb", NotUtf8),
            ("depth/%25c0%25ae", NotUtf8),
            ("depth/%ff", NotUtf8),
            ("depth/%u002e%u002e/x", MalformedEscape),
            ("depth/a%2", MalformedEscape),
            ("depth/a%zz", MalformedEscape),
            ("depth/%2525252e", TooDeeplyEncoded),
            ("depth//x", EmptySegment),
            ("depth/", EmptySegment),
            ("depth/;x", EmptySegment),
            ("", EmptySegment),
            ("depth/a\\b", Backslash),
        ] {
            assert_eq!(check_worker_path(p), Err(why), "{p}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_refuses_every_path_with_a_dot_segment_after_decoding(
            s in "[a-z.;%0-9A-Fa-f/\\\\]{0,40}"
        ) {
            let verdict = check_worker_path(&s);
            if verdict.is_ok() {
                // Whatever is accepted decodes, at every depth, to segments that are names.
                let mut level = s.clone().into_bytes();
                for _ in 0..=MAX_DECODES {
                    for seg in level.split(|&b| b == b'/') {
                        let name = seg.split(|&b| b == b';').next().unwrap_or_default();
                        proptest::prop_assert!(!matches!(name, b"" | b"." | b".."), "{s:?}");
                    }
                    level = percent_encoding::percent_decode(&level).collect();
                }
            }
        }
    }
}
