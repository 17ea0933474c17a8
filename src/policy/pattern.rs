//! Identity and path patterns of the policy language (docs/policy-language.md): parsing with exact
//! errors, and the plain `matches` used by lints and `explain`. The request path uses the
//! indexes built from these in `compile.rs`. PURE: std, identity, path only.

use std::fmt;

use crate::identity::SpiffeId;
use crate::identity::spiffe_id::{MAX_ID_LEN, SCHEME_PREFIX, TrustDomain, check_segment};
use crate::path::normalize;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// "An exact SPIFFE ID; `*` matches exactly one path segment; `**` (only as the last
    /// segment) matches the prefix and everything below."
    #[error("`**` may only be the last segment of a pattern")]
    GlobstarNotLast,
    /// Wildcards stand for whole segments only.
    #[error("`{0}`: wildcards match whole segments only (`*` or `**`), not part of one")]
    PartialWildcard(String),
    /// "The trust domain is always literal: no pattern spans trust domains."
    #[error("the trust domain of a pattern is always literal: {0}")]
    TrustDomain(String),
    /// The pattern is not a well-formed SPIFFE ID apart from its wildcards.
    #[error("{0}")]
    Identity(String),
    /// A pattern of a bare trust domain matches only the trust domain's own ID.
    #[error("`{0}` matches no workload (leaf IDs have a path); did you mean `{0}/**`?")]
    BareTrustDomain(String),
    /// Path patterns are absolute.
    #[error("path pattern must start with `/`")]
    PathNotAbsolute,
    /// Path patterns are matched against normalized paths, so they must be normalized.
    #[error("path segment `{0}` is not in normalized form; write `{1}`")]
    PathNotNormalized(String, String),
    /// Matching ignores one trailing slash, so a pattern must not carry one.
    #[error("drop the trailing `/` (matching already ignores it)")]
    PathTrailingSlash,
    /// The path pattern is not a valid path.
    #[error("invalid path pattern: {0}")]
    Path(String),
}

/// One segment of a pattern: a literal or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternSegment {
    /// Matches exactly this text.
    Literal(String),
    /// `*`: matches exactly one (non-empty) segment.
    Star,
}

impl PatternSegment {
    fn matches(&self, segment: &str) -> bool {
        match self {
            Self::Literal(lit) => lit == segment,
            Self::Star => !segment.is_empty(),
        }
    }
}

/// A parsed SPIFFE identity pattern such as `spiffe://example.org/ns/staging/**`.
///
/// Kept as its text, one allocation, with where its parts are: a fleet's slice holds
/// thousands of patterns, and a `String` per path segment cost ~300 bytes each.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityPattern {
    /// `spiffe://`, the trust domain, the path (`/**` included): the text as written.
    text: Box<str>,
    /// Where the path starts (the end of the trust domain).
    path_at: u16,
    /// Where the path ends: before a trailing `/**`, else the end of the text.
    path_end: u16,
    /// No `*` segment and no `**`.
    exact: bool,
}

/// One path segment of an identity pattern, ordered as patterns sort (a literal first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part<'a> {
    Literal(&'a str),
    Star,
}

impl IdentityPattern {
    /// Parses and validates a pattern.
    ///
    /// # Errors
    /// A [`PatternError`] naming the broken rule.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let as_id = |e: crate::identity::SpiffeIdError| PatternError::Identity(e.to_string());
        if text.len() > MAX_ID_LEN {
            return Err(as_id(crate::identity::SpiffeIdError::TooLong(text.len())));
        }
        let rest = text
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(as_id(crate::identity::SpiffeIdError::WrongScheme))?;
        let td_len = rest.find('/').unwrap_or(rest.len());
        let (td, path) = rest.split_at(td_len);
        if td.contains('*') {
            return Err(PatternError::TrustDomain(format!("`{td}` contains `*`")));
        }
        if rest.contains(['?', '#']) {
            return Err(as_id(crate::identity::SpiffeIdError::QueryOrFragment));
        }
        let trust_domain = TrustDomain::parse(td).map_err(as_id)?;
        if path.is_empty() {
            return Err(PatternError::BareTrustDomain(text.to_owned()));
        }
        let (globstar, exact) = check_identity_path(path)?;
        let mut canonical = String::with_capacity(text.len());
        canonical.push_str(SCHEME_PREFIX);
        canonical.push_str(trust_domain.as_str());
        let path_at = canonical.len();
        canonical.push_str(path);
        let path_end = canonical.len() - if globstar { "/**".len() } else { 0 };
        // Invariant: the text is at most MAX_ID_LEN (2,048) bytes, checked above.
        let offset = |at: usize| u16::try_from(at).unwrap_or(u16::MAX);
        Ok(Self {
            text: canonical.into_boxed_str(),
            path_at: offset(path_at),
            path_end: offset(path_end),
            exact,
        })
    }

    /// The literal trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.text[SCHEME_PREFIX.len()..usize::from(self.path_at)]
    }

    /// The path before any trailing `**`: `/a/*/b`, or empty for `spiffe://td/**`. Each
    /// `/`-separated segment is a literal or `*` (one segment).
    pub fn path(&self) -> &str {
        &self.text[usize::from(self.path_at)..usize::from(self.path_end)]
    }

    /// Whether the pattern ends in `**` (the prefix itself and everything below).
    pub fn globstar(&self) -> bool {
        usize::from(self.path_end) < self.text.len()
    }

    /// The segments of [`Self::path`], each a literal or `*`.
    pub fn segments(&self) -> impl Iterator<Item = &str> + Clone {
        // `get(1..)` of an empty path (`spiffe://td/**`) is `None`: no segment.
        self.path().get(1..).into_iter().flat_map(|p| p.split('/'))
    }

    fn parts(&self) -> impl Iterator<Item = Part<'_>> + Clone {
        self.segments().map(|s| match s {
            "*" => Part::Star,
            literal => Part::Literal(literal),
        })
    }

    /// Whether the pattern names exactly one ID (no `*`, no `**`).
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Whether `id` matches: same trust domain, then segment by segment.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        if self.exact {
            return id.as_str() == &*self.text;
        }
        if id.trust_domain() != self.trust_domain() {
            return false;
        }
        let mut actual = id.segments();
        for want in self.parts() {
            match (want, actual.next()) {
                (Part::Star, Some(seg)) if !seg.is_empty() => {}
                (Part::Literal(lit), Some(seg)) if lit == seg => {}
                _ => return false,
            }
        }
        self.globstar() || actual.next().is_none()
    }

    /// Whether some SPIFFE ID (with a non-empty path) matches both patterns: the same trust
    /// domain, literal or `*` segments compatible position by position, and lengths a `**`
    /// can reconcile (it covers the prefix itself, so `a/**` overlaps `a`).
    pub fn overlaps(&self, other: &Self) -> bool {
        if self.trust_domain() != other.trust_domain() {
            return false;
        }
        let (mut a, mut b) = (self.parts(), other.parts());
        loop {
            match (a.next(), b.next()) {
                (Some(x), Some(y)) if x == Part::Star || y == Part::Star || x == y => {}
                (Some(_), Some(_)) => return false,
                // An identity pattern always has a segment or a `**`, so what both match
                // then includes an ID with a non-empty path.
                (None, None) => return true,
                (None, Some(_)) => return self.globstar(),
                (Some(_), None) => return other.globstar(),
            }
        }
    }

    /// Appends the pattern's text (as [`fmt::Display`] writes it) to `out`.
    pub fn write_to(&self, out: &mut String) {
        out.push_str(&self.text);
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Patterns sort by trust domain, then segment by segment (a literal before `*`, a prefix
/// before what extends it), then without `**` before with it.
impl Ord for IdentityPattern {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.trust_domain()
            .cmp(other.trust_domain())
            .then_with(|| self.parts().cmp(other.parts()))
            .then_with(|| self.globstar().cmp(&other.globstar()))
    }
}

impl PartialOrd for IdentityPattern {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks the path of an identity pattern (`/a/*/b/**`, non-empty) segment by segment, in
/// order: whether it ends in `**`, and whether it is exact (no wildcard at all).
fn check_identity_path(path: &str) -> Result<(bool, bool), PatternError> {
    let mut parts = path.split('/').skip(1).peekable();
    let mut exact = true;
    while let Some(part) = parts.next() {
        match part {
            "**" if parts.peek().is_none() => return Ok((true, false)),
            "**" => return Err(PatternError::GlobstarNotLast),
            "*" => exact = false,
            p if p.contains('*') => return Err(PatternError::PartialWildcard(p.to_owned())),
            p => check_segment(p).map_err(|e| PatternError::Identity(e.to_string()))?,
        }
    }
    Ok((false, exact))
}

/// A parsed path pattern: exact, with `*` segments, or ending in `**`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathPattern {
    /// Segments before any trailing `**`.
    pub segments: Vec<PatternSegment>,
    /// Whether the pattern ends in `**` (the prefix itself and any depth below).
    pub globstar: bool,
    /// The canonical text, e.g. `/v1/charges/*`, kept for printing and hashing.
    text: Box<str>,
    /// For patterns without `*`: the text before any `/**` (`/` for `/**`), so matching is
    /// one string comparison.
    literal: Option<Box<str>>,
}

impl PathPattern {
    fn new(segments: Vec<PatternSegment>, globstar: bool) -> Self {
        let text = canonical_path(&segments, globstar).into_boxed_str();
        let literal = (!segments.contains(&PatternSegment::Star))
            .then(|| canonical_path(&segments, false).into_boxed_str());
        Self {
            segments,
            globstar,
            text,
            literal,
        }
    }

    /// The canonical text of the pattern.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Parses a path pattern; literal parts must already be in normalized form.
    ///
    /// # Errors
    /// A [`PatternError`] naming the broken rule, with the normalized spelling as a hint.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError::PathNotAbsolute);
        }
        if text == "/" {
            return Ok(Self::new(Vec::new(), false));
        }
        if text.ends_with('/') {
            return Err(PatternError::PathTrailingSlash);
        }
        let (segments, globstar) = parse_segments(text, check_path_segment)?;
        Ok(Self::new(segments, globstar))
    }

    /// Whether a normalized request path matches (one trailing slash is ignored).
    pub fn matches(&self, path: &str) -> bool {
        self.matches_trimmed(trim_trailing_slash(path))
    }

    /// [`Self::matches`] for a path already passed through [`trim_trailing_slash`].
    pub fn matches_trimmed(&self, trimmed: &str) -> bool {
        match (&self.literal, self.globstar) {
            (Some(lit), false) => return trimmed == &**lit,
            // `/**`: the literal is `/`, and everything matches.
            (Some(lit), true) if &**lit == "/" => return true,
            (Some(lit), true) => {
                let rest = trimmed.strip_prefix(&**lit);
                return rest.is_some_and(|r| r.is_empty() || r.starts_with('/'));
            }
            (None, _) => {}
        }
        if trimmed == "/" {
            return self.segments.is_empty();
        }
        let after_root = trimmed.get(1..).unwrap_or("");
        segments_match(&self.segments, self.globstar, path_segments(after_root))
    }
}

/// The `/`-separated segments of `path` (no leading slash), found by a plain byte scan:
/// on short request paths this is several times cheaper than `str::split`'s searcher.
fn path_segments(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(|b| b == b'/') {
            Some(i) => {
                rest = Some(&current[i + 1..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `/a/*/b`, `/a/**`, `/` or `/**`.
fn canonical_path(segments: &[PatternSegment], globstar: bool) -> String {
    let mut out = String::new();
    for seg in segments {
        out.push('/');
        out.push_str(match seg {
            PatternSegment::Literal(l) => l,
            PatternSegment::Star => "*",
        });
    }
    match (out.is_empty(), globstar) {
        (_, true) => out.push_str("/**"),
        (true, false) => out.push('/'),
        (false, false) => {}
    }
    out
}

/// A request path without its one optional trailing slash (`/` stays `/`).
pub fn trim_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    }
}

/// A literal path-pattern segment must be exactly what `normalize` would produce.
fn check_path_segment(segment: &str) -> Result<(), PatternError> {
    match segment {
        "" => return Err(PatternError::Path("empty segment (`//`)".into())),
        "." | ".." => return Err(PatternError::Path("`.` and `..` segments".into())),
        _ => {}
    }
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if segment.bytes().all(unreserved) {
        // Already what `normalize` would produce (dot segments were refused above).
        return Ok(());
    }
    let probe = format!("/{segment}");
    match normalize(&probe) {
        Ok(n) if n.as_str() == probe => Ok(()),
        // `%2e` and `%2E%2E` decode to dot segments, which have no normalized spelling.
        Ok(n) if matches!(n.as_str(), "/" | "/.") => Err(PatternError::Path(
            "`.` and `..` segments (even percent-encoded)".into(),
        )),
        Ok(n) => Err(PatternError::PathNotNormalized(
            segment.to_owned(),
            n.as_str().trim_start_matches('/').to_owned(),
        )),
        Err(e) => Err(PatternError::Path(e.to_string())),
    }
}

/// Splits `/a/*/b/**` into segments; `check` validates each literal segment.
fn parse_segments(
    path: &str,
    check: impl Fn(&str) -> Result<(), PatternError>,
) -> Result<(Vec<PatternSegment>, bool), PatternError> {
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        match *part {
            "**" if i + 1 == parts.len() => return Ok((segments, true)),
            "**" => return Err(PatternError::GlobstarNotLast),
            "*" => segments.push(PatternSegment::Star),
            p if p.contains('*') => return Err(PatternError::PartialWildcard(p.to_owned())),
            p => {
                check(p)?;
                segments.push(PatternSegment::Literal(p.to_owned()));
            }
        }
    }
    Ok((segments, false))
}

/// Segment-wise match shared by identity and path patterns.
fn segments_match<'a>(
    pattern: &[PatternSegment],
    globstar: bool,
    mut actual: impl Iterator<Item = &'a str>,
) -> bool {
    for want in pattern {
        match actual.next() {
            Some(seg) if want.matches(seg) => {}
            _ => return false,
        }
    }
    globstar || actual.next().is_none()
}

/// Some segment sequence matches both `(segments, globstar)` patterns; shared by identity
/// and path patterns.
pub(super) fn segments_overlap(
    (a, a_globstar): (&[PatternSegment], bool),
    (b, b_globstar): (&[PatternSegment], bool),
) -> bool {
    let compatible = |x: &PatternSegment, y: &PatternSegment| {
        x == &PatternSegment::Star || y == &PatternSegment::Star || x == y
    };
    // An identity pattern always has a segment or a `**`, so what both match then includes
    // an ID with a non-empty path.
    a.iter().zip(b).all(|(x, y)| compatible(x, y))
        && match (a_globstar, b_globstar) {
            (false, false) => a.len() == b.len(),
            (true, false) => b.len() >= a.len(),
            (false, true) => a.len() >= b.len(),
            (true, true) => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(a: &str, b: &str) -> bool {
        let (a, b) = (
            IdentityPattern::parse(a).unwrap(),
            IdentityPattern::parse(b).unwrap(),
        );
        assert_eq!(
            a.overlaps(&b),
            b.overlaps(&a),
            "overlap is symmetric: {a} {b}"
        );
        a.overlaps(&b)
    }

    #[test]
    fn identity_patterns_overlap_when_some_id_matches_both() {
        let t = |p: &str| format!("spiffe://t.org/{p}");
        // (a, b, overlap?) — one row per rule of docs/policy-language.md identity patterns.
        let rows = [
            ("sa/api", "sa/api", true),
            ("sa/api", "sa/web", false),
            // `*` is exactly one segment, compatible with any literal there.
            ("sa/*", "sa/api", true),
            ("*/api", "sa/*", true),
            ("sa/*", "sa/api/v1", false),
            ("sa/*", "sa", false),
            // `**` covers the prefix itself and anything below.
            ("sa/**", "sa/api/v1", true),
            ("sa/**", "sa", true),
            ("sa/**", "sa/*", true),
            ("sa/**", "*/x/**", true),
            ("sa/**", "ns/api", false),
            ("sa/api/**", "sa", false),
            ("sa/api/**", "sa/*/v1", true),
            ("**", "anything/at/all", true),
        ];
        for (a, b, want) in rows {
            assert_eq!(overlap(&t(a), &t(b)), want, "{a} vs {b}");
        }
    }

    #[test]
    fn write_to_writes_what_display_writes() {
        for text in [
            "spiffe://example.org/ns/prod/sa/api",
            "spiffe://example.org/ns/*/sa/api",
            "spiffe://example.org/ns/prod/**",
            "spiffe://example.org/**",
            "spiffe://example.org/a/*/**",
        ] {
            let pattern = IdentityPattern::parse(text).unwrap();
            let mut written = "prefix".to_owned();
            pattern.write_to(&mut written);
            assert_eq!(written, format!("prefix{pattern}"));
            assert_eq!(pattern.to_string(), text);
        }
    }

    #[test]
    fn patterns_sort_by_trust_domain_then_segments_a_literal_before_star_then_globstar() {
        // The order of the parsed form (trust domain, segments, `**`), not of the text:
        // `*` sorts after every literal although its byte is smaller.
        let sorted = [
            "spiffe://a.org/**",
            "spiffe://a.org/x",
            "spiffe://a.org/x/**",
            "spiffe://a.org/x/y",
            "spiffe://a.org/x/*",
            "spiffe://a.org/*",
            "spiffe://b.org/a",
        ];
        let mut patterns: Vec<IdentityPattern> = sorted
            .iter()
            .rev()
            .map(|p| IdentityPattern::parse(p).unwrap())
            .collect();
        patterns.sort();
        let got: Vec<String> = patterns.iter().map(ToString::to_string).collect();
        assert_eq!(got, sorted);
        let p = &patterns[4];
        assert_eq!(
            (p.trust_domain(), p.path(), p.globstar()),
            ("a.org", "/x/*", false)
        );
        assert_eq!(p.segments().collect::<Vec<_>>(), ["x", "*"]);
        let all = &patterns[0];
        assert_eq!(
            (all.path(), all.globstar(), all.segments().count()),
            ("", true, 0)
        );
    }

    #[test]
    fn a_pattern_matches_ids_segment_by_segment() {
        let id = |s: &str| SpiffeId::parse(s).unwrap();
        let rows = [
            ("spiffe://t.org/a/b", "spiffe://t.org/a/b", true),
            ("spiffe://t.org/a/b", "spiffe://t.org/a/bb", false),
            ("spiffe://t.org/a/b", "spiffe://u.org/a/b", false),
            ("spiffe://t.org/a/*", "spiffe://t.org/a/b", true),
            ("spiffe://t.org/a/*", "spiffe://t.org/a/b/c", false),
            ("spiffe://t.org/a/*", "spiffe://t.org/a", false),
            ("spiffe://t.org/a/**", "spiffe://t.org/a", true),
            ("spiffe://t.org/a/**", "spiffe://t.org/a/b/c", true),
            ("spiffe://t.org/a/**", "spiffe://t.org/ab", false),
            ("spiffe://t.org/**", "spiffe://t.org/x", true),
        ];
        for (pattern, candidate, want) in rows {
            let p = IdentityPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(&id(candidate)), want, "{pattern} {candidate}");
        }
    }

    #[test]
    fn patterns_of_different_trust_domains_never_overlap() {
        assert!(!overlap("spiffe://a.org/**", "spiffe://b.org/**"));
        assert!(!overlap("spiffe://a.org/sa/api", "spiffe://b.org/sa/api"));
    }
}
