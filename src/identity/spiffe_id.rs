//! `SpiffeId` and `TrustDomain`: the only way to hold a SPIFFE ID in segward is to have
//! passed every rule of the SPIFFE-ID specification (docs/security.md). Pure: std only.
//!
//! Upper case in a trust domain is *rejected*, not folded: two spellings of one trust
//! domain would otherwise compare unequal in one place and equal in another.

use std::fmt;
use std::str::FromStr;

/// The scheme prefix every SPIFFE ID starts with, lower case only.
pub const SCHEME_PREFIX: &str = "spiffe://";
/// "The total length of a SPIFFE ID MUST NOT exceed 2048 bytes."
pub const MAX_ID_LEN: usize = 2048;
/// "Trust domain names ... MUST NOT exceed 255 bytes."
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A rule of the SPIFFE-ID specification that an input broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// The input is empty.
    #[error("empty SPIFFE ID")]
    Empty,
    /// "The total length of a SPIFFE ID MUST NOT exceed 2048 bytes."
    #[error("SPIFFE ID is {0} bytes long; the limit is 2048")]
    TooLong(usize),
    /// "The scheme ... MUST be set to `spiffe`" (lower case, followed by `//`).
    #[error("SPIFFE ID must start with `spiffe://` (lower case)")]
    WrongScheme,
    /// "The trust domain name ... MUST NOT be empty."
    #[error("SPIFFE ID has an empty trust domain")]
    EmptyTrustDomain,
    /// "Trust domain names ... MUST NOT exceed 255 bytes."
    #[error("trust domain is {0} bytes long; the limit is 255")]
    TrustDomainTooLong(usize),
    /// Trust domains are lower case only; segward rejects rather than folds upper case.
    #[error("trust domain contains upper case `{0}`: trust domains are lower case only")]
    UppercaseTrustDomain(char),
    /// "Trust domain names MUST consist only of lower case letters, digits, dots, dashes
    /// and underscores."
    #[error("trust domain contains `{0}`; allowed are a-z 0-9 . - _")]
    BadTrustDomainChar(char),
    /// "The URI MUST NOT include a port."
    #[error("SPIFFE ID must not carry a port")]
    Port,
    /// "The URI MUST NOT include userinfo."
    #[error("SPIFFE ID must not carry userinfo (`user@`)")]
    Userinfo,
    /// "SPIFFE IDs MUST NOT include a query or fragment component."
    #[error("SPIFFE ID must not carry a query (`?`) or fragment (`#`)")]
    QueryOrFragment,
    /// "Percent-encoded characters are not allowed" anywhere in a SPIFFE ID.
    #[error("SPIFFE ID must not contain percent-encoding (`%`)")]
    PercentEncoded,
    /// "Path segments MUST NOT be empty" (no `//` in the path).
    #[error("SPIFFE ID path has an empty segment (`//`)")]
    EmptySegment,
    /// "Path segments MUST NOT be relative path modifiers (`.` or `..`)."
    #[error("SPIFFE ID path has a `.` or `..` segment")]
    DotSegment,
    /// "The path MUST NOT include a trailing `/`."
    #[error("SPIFFE ID must not end with `/`")]
    TrailingSlash,
    /// "Path segments MUST consist only of letters, digits, dots, dashes and underscores."
    #[error("SPIFFE ID path contains `{0}`; allowed are a-z A-Z 0-9 . - _")]
    BadPathChar(char),
}

impl SpiffeIdError {
    /// Short, bounded label for metrics and decision logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong(_) => "too-long",
            Self::WrongScheme => "wrong-scheme",
            Self::EmptyTrustDomain => "empty-trust-domain",
            Self::TrustDomainTooLong(_) => "trust-domain-too-long",
            Self::UppercaseTrustDomain(_) => "uppercase-trust-domain",
            Self::BadTrustDomainChar(_) => "bad-trust-domain-char",
            Self::Port => "port",
            Self::Userinfo => "userinfo",
            Self::QueryOrFragment => "query-or-fragment",
            Self::PercentEncoded => "percent-encoded",
            Self::EmptySegment => "empty-segment",
            Self::DotSegment => "dot-segment",
            Self::TrailingSlash => "trailing-slash",
            Self::BadPathChar(_) => "bad-path-char",
        }
    }
}

/// A validated trust domain name such as `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates a bare trust domain name (no scheme).
    ///
    /// # Errors
    /// The first trust-domain rule the name breaks.
    pub fn parse(name: &str) -> Result<Self, SpiffeIdError> {
        check_trust_domain(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own ID, `spiffe://<name>`.
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            raw: format!("{SCHEME_PREFIX}{}", self.0),
            td_end: SCHEME_PREFIX.len() + self.0.len(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A SPIFFE ID that passed every rule of the specification; compares as its exact text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    raw: String,
    /// Byte offset where the path starts (end of the trust domain).
    td_end: usize,
}

impl SpiffeId {
    /// Validates `input` against every SPIFFE-ID rule of docs/security.md.
    ///
    /// # Errors
    /// The first rule the input breaks, as a [`SpiffeIdError`] variant.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if input.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(input.len()));
        }
        let rest = input
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        if rest.contains(['?', '#']) {
            return Err(SpiffeIdError::QueryOrFragment);
        }
        let td_len = rest.find('/').unwrap_or(rest.len());
        let (trust_domain, path) = rest.split_at(td_len);
        check_trust_domain(trust_domain)?;
        check_path(path)?;
        Ok(Self {
            raw: input.to_owned(),
            td_end: SCHEME_PREFIX.len() + td_len,
        })
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        &self.raw[SCHEME_PREFIX.len()..self.td_end]
    }

    /// The path, e.g. `/ns/prod/sa/payments`; empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.raw[self.td_end..]
    }

    /// The path segments, without slashes.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        // Invariant: a non-empty path starts with `/` and has no empty segments.
        self.path().split('/').skip(1)
    }

    /// The whole ID as text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Checks one trust domain name (the authority part of the URI).
fn check_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    // Userinfo and port are named before the charset check so the error says why.
    if td.contains('@') {
        return Err(SpiffeIdError::Userinfo);
    }
    if td.contains(':') {
        return Err(SpiffeIdError::Port);
    }
    if td.contains('%') {
        return Err(SpiffeIdError::PercentEncoded);
    }
    for c in td.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => return Err(SpiffeIdError::UppercaseTrustDomain(c)),
            _ => return Err(SpiffeIdError::BadTrustDomainChar(c)),
        }
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong(td.len()));
    }
    Ok(())
}

/// Checks the path part: empty, or `/seg(/seg)*` with valid segments.
fn check_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.contains('%') {
        return Err(SpiffeIdError::PercentEncoded);
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    // Invariant: `path` starts with '/' because the trust domain ended at the first '/'.
    for segment in path.split('/').skip(1) {
        check_segment(segment)?;
    }
    Ok(())
}

/// Checks one path segment (without slashes).
pub(crate) fn check_segment(segment: &str) -> Result<(), SpiffeIdError> {
    match segment {
        "" => return Err(SpiffeIdError::EmptySegment),
        "." | ".." => return Err(SpiffeIdError::DotSegment),
        _ => {}
    }
    match segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(SpiffeIdError::BadPathChar(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
