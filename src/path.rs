//! Request-path normalization: the one function whose output the policy matches *and* the
//! proxy forwards, so the two can never disagree about which path a request names
//! (docs/security.md, "Paths"). Pure: std and thiserror only; one allocation per call.

use std::fmt;

/// Rule 8: "reject inputs longer than 8192 bytes".
const MAX_LEN: usize = 8192;

/// Upper-case hex digits for the escapes `normalize` keeps (RFC 3986 §6.2.2.1).
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// A rule of docs/security.md "Paths" (or of RFC 3986) that a request path broke; each is a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Rule 8, checked first: "reject inputs longer than 8192 bytes".
    #[error("path is {0} bytes long; the limit is 8192")]
    TooLong(usize),
    /// Rule 1: the path "must be non-empty and start with `/`" (origin-form); `*` is refused.
    #[error("path must start with `/` (origin-form; `*` and absolute URIs are not accepted)")]
    NotOriginForm,
    /// Rule 2: "raw backslashes → 400".
    #[error("path contains a raw backslash `\\`")]
    Backslash,
    /// Rule 2: raw bytes must be visible ASCII; controls, NUL, space, DEL and non-ASCII are
    /// rejected.
    #[error("path contains byte 0x{0:02X}; only visible ASCII is allowed, percent-encode the rest")]
    NotVisibleAscii(u8),
    /// The input is the path only: the caller splits off the query at the first `?`, and a
    /// fragment (`#`) never belongs in a request.
    #[error("path contains `?` or `#`; split off the query before normalizing")]
    QueryOrFragment,
    /// Rule 3: `pct-encoded = "%" HEXDIG HEXDIG` (RFC 3986 §2.1).
    #[error("path has a malformed escape; `%` must be followed by two hex digits (`%25` is `%`)")]
    MalformedEscape,
    /// Rule 3: "encoded `/` … → 400" (`%2F`).
    #[error("path contains an encoded slash `%2F`")]
    EncodedSlash,
    /// Rule 3: "encoded … `\` … → 400" (`%5C`).
    #[error("path contains an encoded backslash `%5C`")]
    EncodedBackslash,
    /// Rule 3: "encoded … NUL … → 400" (`%00`).
    #[error("path contains an encoded NUL `%00`")]
    EncodedNul,
    /// Rule 3: other encoded control characters (`%01`–`%1F`, `%7F`) are rejected too.
    #[error("path contains an encoded control character `%{0:02X}`")]
    EncodedControl(u8),
    /// Rule 6: "`.`/`..` resolved (escaping the root → 400)"; a `..` is never clamped at `/`.
    #[error("path climbs above the root with `..`")]
    EscapesRoot,
}

impl PathError {
    /// Short, bounded label for metrics and decision logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLong(_) => "too-long",
            Self::NotOriginForm => "not-origin-form",
            Self::Backslash => "backslash",
            Self::NotVisibleAscii(_) => "not-visible-ascii",
            Self::QueryOrFragment => "query-or-fragment",
            Self::MalformedEscape => "malformed-escape",
            Self::EncodedSlash => "encoded-slash",
            Self::EncodedBackslash => "encoded-backslash",
            Self::EncodedNul => "encoded-nul",
            Self::EncodedControl(_) => "encoded-control",
            Self::EscapesRoot => "escapes-root",
        }
    }
}

/// A request path in segward's one canonical form; [`normalize`] is its only constructor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    /// `/`, the root: what a TCP connection, which has no path, stands on where a path is
    /// asked for (it matches no rule's `paths` by itself being chosen; rules check the mode).
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// The path as text, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as an owned `String`, without copying.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NormalizedPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Normalizes a request path per docs/security.md: percent-decodes unreserved characters,
/// upper-cases the escapes it keeps, merges `//`, and resolves `.` and `..`; a trailing
/// slash is kept.
///
/// `path` is the path component only: the caller splits off the query at the first `?`,
/// and any `?` or `#` left in `path` is an error ([`PathError::QueryOrFragment`]).
/// Errors are reported in rule order (length, origin-form, raw bytes, escapes, `..`).
///
/// # Errors
/// The first [`PathError`] rule the path breaks, e.g. [`PathError::EncodedSlash`] for
/// `/a%2Fb` or [`PathError::EscapesRoot`] for `/a/../..`.
pub fn normalize(path: &str) -> Result<NormalizedPath, PathError> {
    if path.len() > MAX_LEN {
        return Err(PathError::TooLong(path.len()));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotOriginForm);
    };
    check_raw_bytes(path)?;
    // Never longer than the input: decoding shrinks, and a dot segment becomes at most `/`.
    let mut out = String::with_capacity(path.len());
    // Rule 3 errors outrank rule 6, so a climb past the root is noted and reported only
    // once every segment has decoded.
    let mut escapes_root = false;
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        escapes_root |= push_segment(&mut out, segment, segments.peek().is_none())?;
    }
    if escapes_root {
        return Err(PathError::EscapesRoot);
    }
    Ok(NormalizedPath(out))
}

/// Rule 2 (and the path-only contract): every raw byte is visible ASCII other than `\`,
/// `?` and `#`.
fn check_raw_bytes(path: &str) -> Result<(), PathError> {
    let forbidden = |b: &u8| !matches!(b, b'!'..=b'~') || matches!(b, b'\\' | b'?' | b'#');
    match path.bytes().find(forbidden) {
        None => Ok(()),
        Some(b'\\') => Err(PathError::Backslash),
        Some(b'?' | b'#') => Err(PathError::QueryOrFragment),
        Some(byte) => Err(PathError::NotVisibleAscii(byte)),
    }
}

/// Appends `/` and the decoded `raw` segment to `out`, then applies rules 5–7 to it.
/// Returns whether a `..` tried to climb above the root (rule 6).
fn push_segment(out: &mut String, raw: &str, last: bool) -> Result<bool, PathError> {
    let start = out.len();
    out.push('/');
    push_decoded(out, raw)?;
    // Rule 4: the dot test runs on the decoded segment, so `%2e%2e` is `..`.
    let parent = match &out[start + 1..] {
        // Rule 7: "a trailing slash is KEPT".
        "" if last => return Ok(false),
        // Rule 5 drops an empty segment; rule 6 drops `.`.
        "" | "." => false,
        ".." => true,
        _ => return Ok(false),
    };
    out.truncate(start);
    let escapes_root = parent && !pop_segment(out);
    // Rule 7: RFC 3986 §5.2.4 turns a final `/.` or `/..` into a trailing `/`.
    if last {
        out.push('/');
    }
    Ok(escapes_root)
}

/// Removes the last segment of `out`; returns `false` if there is none (`out` is the root).
fn pop_segment(out: &mut String) -> bool {
    match out.rfind('/') {
        Some(slash) => {
            out.truncate(slash);
            true
        }
        None => false,
    }
}

/// Appends `raw` to `out`, decoding unreserved escapes and upper-casing the others (rule 3).
fn push_decoded(out: &mut String, raw: &str) -> Result<(), PathError> {
    let mut rest = raw;
    while let Some(pct) = rest.find('%') {
        out.push_str(&rest[..pct]);
        let digits = rest.as_bytes().get(pct + 1..pct + 3);
        push_escape(out, decode_escape(digits)?)?;
        // The two bytes after `%` are hex digits, hence ASCII: `pct + 3` is a char boundary.
        rest = &rest[pct + 3..];
    }
    out.push_str(rest);
    Ok(())
}

/// The byte that two hex digits encode, or `MalformedEscape` (RFC 3986 §2.1).
fn decode_escape(digits: Option<&[u8]>) -> Result<u8, PathError> {
    match digits {
        Some(&[high, low]) => Ok(hex_value(high)? << 4 | hex_value(low)?),
        _ => Err(PathError::MalformedEscape),
    }
}

/// The value of one hex digit, either case.
fn hex_value(digit: u8) -> Result<u8, PathError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(PathError::MalformedEscape),
    }
}

/// Appends one decoded escape: rejected, decoded if unreserved, else re-encoded upper case.
fn push_escape(out: &mut String, byte: u8) -> Result<(), PathError> {
    match byte {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        0 => Err(PathError::EncodedNul),
        0x01..=0x1F | 0x7F => Err(PathError::EncodedControl(byte)),
        // RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~", and §6.2.2.2:
        // escapes of them "should be decoded".
        b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
            out.push(char::from(b));
            Ok(())
        }
        _ => {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(byte & 0x0F)]));
            Ok(())
        }
    }
}

/// Characters some upstreams decode or strip even though RFC 3986 keeps them distinct:
/// `:` `@` and the sub-delimiters.
const LENIENT_DECODED: &[u8] = b":@!$&'()*+,;=";

/// The path as a lenient upstream may route it, when that differs from `path` (a
/// [`NormalizedPath`]): `;parameters` cut from each segment (Tomcat, Spring), and escaped
/// `:` `@` and sub-delimiters decoded (`%3A` → `:`), then normalized again — so
/// `/admin;x/users` → `/admin/users` and `/a/..;/admin` → `/admin`.
///
/// The policy matches **deny** rules against this spelling too (allow rules only against
/// the path itself), so such tricks can only ever add denials. `None` when the path holds
/// no `;` and no `%`, or the variant is the same path.
///
/// # Errors
/// The variant's own [`PathError`], e.g. [`PathError::EscapesRoot`] for `/..;/x`: a path
/// that climbs above the root for the upstream is ambiguous and must be refused.
pub fn upstream_variant(path: &str) -> Option<Result<NormalizedPath, PathError>> {
    let bytes = path.as_bytes();
    // Only `;` or an escape of a lenient character changes anything: a path with just
    // `%20`-style escapes (common) costs one scan and no allocation.
    let changes = |i: usize| bytes[i] == b';' || lenient_escape(bytes.get(i..i + 3)).is_some();
    if !(0..bytes.len()).any(changes) {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    let (mut i, mut in_params) = (0, false);
    while i < bytes.len() {
        let (byte, raw) = match lenient_escape(bytes.get(i..i + 3)) {
            Some(decoded) => (decoded, &path[i..i + 3]),
            None => (bytes[i], &path[i..i + 1]),
        };
        i += raw.len();
        match byte {
            b'/' => {
                in_params = false;
                out.push('/');
            }
            _ if in_params => {}
            b';' => in_params = true,
            _ if raw.len() == 3 => out.push(char::from(byte)),
            _ => out.push_str(raw),
        }
    }
    (out != path).then(|| normalize(&out))
}

/// The byte behind an escape `%XY` when it is one of [`LENIENT_DECODED`].
fn lenient_escape(escape: Option<&[u8]>) -> Option<u8> {
    let [b'%', hi, lo] = escape? else {
        return None;
    };
    let byte = (hex_value(*hi).ok()? << 4) | hex_value(*lo).ok()?;
    LENIENT_DECODED.contains(&byte).then_some(byte)
}

#[cfg(test)]
mod tests;
