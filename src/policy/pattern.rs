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
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityPattern {
    /// The literal trust domain.
    pub trust_domain: String,
    /// Path segments before any trailing `**`.
    pub segments: Vec<PatternSegment>,
    /// Whether the pattern ends in `**` (the prefix itself and everything below).
    pub globstar: bool,
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
        let trust_domain = TrustDomain::parse(td).map_err(as_id)?.as_str().to_owned();
        if path.is_empty() {
            return Err(PatternError::BareTrustDomain(text.to_owned()));
        }
        let (segments, globstar) = parse_segments(path, |s| {
            check_segment(s).map_err(|e| PatternError::Identity(e.to_string()))
        })?;
        Ok(Self {
            trust_domain,
            segments,
            globstar,
        })
    }

    /// Whether the pattern names exactly one ID (no `*`, no `**`).
    pub fn is_exact(&self) -> bool {
        !self.globstar && !self.segments.contains(&PatternSegment::Star)
    }

    /// Whether `id` matches: same trust domain, then segment by segment.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        id.trust_domain() == self.trust_domain
            && segments_match(&self.segments, self.globstar, id.segments())
    }

    /// Whether some SPIFFE ID (with a non-empty path) matches both patterns: the same trust
    /// domain, literal or `*` segments compatible position by position, and lengths a `**`
    /// can reconcile (it covers the prefix itself, so `a/**` overlaps `a`).
    pub fn overlaps(&self, other: &Self) -> bool {
        self.trust_domain == other.trust_domain
            && segments_overlap(
                (&self.segments, self.globstar),
                (&other.segments, other.globstar),
            )
    }
}

impl IdentityPattern {
    /// Appends the pattern's text (as [`fmt::Display`] writes it) to `out`, without the
    /// formatting machinery: compile writes every pattern of a policy once or twice.
    pub fn write_to(&self, out: &mut String) {
        out.push_str(SCHEME_PREFIX);
        out.push_str(&self.trust_domain);
        for seg in &self.segments {
            match seg {
                PatternSegment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                PatternSegment::Star => out.push_str("/*"),
            }
        }
        if self.globstar {
            out.push_str("/**");
        }
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME_PREFIX}{}", self.trust_domain)?;
        write_segments(f, &self.segments, self.globstar)
    }
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

fn write_segments(
    f: &mut fmt::Formatter<'_>,
    segs: &[PatternSegment],
    globstar: bool,
) -> fmt::Result {
    for seg in segs {
        match seg {
            PatternSegment::Literal(l) => write!(f, "/{l}")?,
            PatternSegment::Star => f.write_str("/*")?,
        }
    }
    if globstar {
        f.write_str("/**")?;
    }
    Ok(())
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
    fn patterns_of_different_trust_domains_never_overlap() {
        assert!(!overlap("spiffe://a.org/**", "spiffe://b.org/**"));
        assert!(!overlap("spiffe://a.org/sa/api", "spiffe://b.org/sa/api"));
    }
}
