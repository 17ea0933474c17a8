//! `PolicyError`: every way a policy can be invalid, located at file:line:col
//! (docs/policy-language.md: "Invalid policy … is rejected with file:line:col").

use std::fmt;

/// One problem in a policy, where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file as the operator named it (or `<input>`).
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub col: u64,
    /// What is wrong.
    pub kind: PolicyErrorKind,
}

/// What is wrong with a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyErrorKind {
    /// The file or folder could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// A `*.yaml.gz` file that is not a whole gzip stream.
    #[error("cannot inflate: {0}")]
    Gzip(String),
    /// A folder without any `*.yaml`/`*.yml` file: no policy means no traffic.
    #[error("no *.yaml or *.yml policy file here")]
    NoPolicyFiles,
    /// A policy file is larger than segward accepts.
    #[error("file is {0} bytes; the limit is {1}")]
    TooLarge(u64, u64),
    /// YAML syntax, an unknown key, a wrong type or a YAML budget breach.
    #[error("{0}")]
    Yaml(String),
    /// "a name defined twice is an error"
    #[error("segment `{0}` is already defined at {1}")]
    DuplicateSegment(String, String),
    /// "a name defined twice is an error"
    #[error("rule `{0}` is already defined at {1}")]
    DuplicateRule(String, String),
    /// Names must be usable in logs and selectors.
    #[error("bad name `{0}`: use letters, digits, `.`, `_` and `-` (not `*`)")]
    BadName(String),
    /// `revoked` and `default-deny` are the decision log's words for steps 1 and 4.
    #[error("`{0}` is reserved for the decision log; pick another rule name")]
    ReservedRuleName(String),
    /// A selector names a segment no file defines.
    #[error("unknown segment `{0}`{1}")]
    UnknownSegment(String, String),
    /// A malformed identity or path pattern.
    #[error("{0}")]
    Pattern(#[from] super::pattern::PatternError),
    /// A segment must list at least one identity pattern.
    #[error("segment `{0}` lists no identities")]
    NoIdentities(String),
    /// `from`, `to`, `methods` or `paths` given as an empty list matches nothing.
    #[error("`{0}` is an empty list, which matches nothing; omit it or name something")]
    EmptyList(&'static str),
    /// `{}` as a selector would match every segment by accident.
    #[error("an empty label selector `{{}}` is not allowed; use \"*\" for any identity")]
    EmptyLabelSelector,
    /// "Methods are upper-case tokens."
    #[error("bad method `{0}`: methods are upper-case HTTP tokens such as GET{1}")]
    BadMethod(String, String),
    /// `dry_run` rolls out a deny rule; an allow rule has nothing to roll out.
    #[error("`dry_run` applies to deny rules only")]
    DryRunOnAllow,
    /// A tripwire is a decoy a caller must never reach: only a deny rule can be one.
    #[error("`tripwire` applies to deny rules only (a decoy no legitimate caller reaches)")]
    TripwireOnAllow,
    /// `expires:`, `since:` or `until:` is not an RFC 3339 instant.
    #[error(
        "`{0}: {1}` is not an RFC 3339 time such as 2026-12-31T18:00:00Z or 2026-12-31T19:00:00+01:00 ({2})"
    )]
    BadTimestamp(&'static str, String, String),
    /// A `revoked:` map must say what it revokes, once.
    #[error("a `revoked:` entry names exactly one of `identity`, `segment`, `labels` (found {0})")]
    RevokedScope(usize),
    /// A `revoked:` label selector that matches no segment revokes nothing: a typo.
    #[error("`revoked:` labels {0} match no segment")]
    RevokedLabelsMatchNothing(String),
    /// `until` must come after `since`.
    #[error("`until` ({0}) is not after `since` ({1})")]
    UntilBeforeSince(String, String),
    /// A test names an invalid SPIFFE ID.
    #[error("invalid SPIFFE ID in test: {0}")]
    BadTestId(String),
    /// A test path that a real request could not carry.
    #[error("invalid test path: {0}")]
    BadTestPath(String),
    /// "a policy whose tests fail is invalid"
    #[error("test failed: expected {expected}, got {got}")]
    TestFailed {
        /// What the test asked for, e.g. `deny (rule no-admin-api)`.
        expected: String,
        /// What the policy decided, e.g. `allow (rule frontend-creates-charges)`.
        got: String,
    },
}

impl PolicyErrorKind {
    /// Short, bounded label for metrics (e.g. policy reloads rejected by reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::Gzip(_) => "gzip",
            Self::NoPolicyFiles => "no-policy-files",
            Self::TooLarge(..) => "too-large",
            Self::Yaml(_) => "yaml",
            Self::DuplicateSegment(..) => "duplicate-segment",
            Self::DuplicateRule(..) => "duplicate-rule",
            Self::BadName(_) => "bad-name",
            Self::ReservedRuleName(_) => "reserved-rule-name",
            Self::UnknownSegment(..) => "unknown-segment",
            Self::Pattern(_) => "bad-pattern",
            Self::NoIdentities(_) => "no-identities",
            Self::EmptyList(_) => "empty-list",
            Self::EmptyLabelSelector => "empty-label-selector",
            Self::BadMethod(..) => "bad-method",
            Self::DryRunOnAllow => "dry-run-on-allow",
            Self::TripwireOnAllow => "tripwire-on-allow",
            Self::BadTimestamp(..) => "bad-timestamp",
            Self::RevokedScope(_) | Self::RevokedLabelsMatchNothing(_) => "bad-revoked",
            Self::UntilBeforeSince(..) => "bad-timestamp",
            Self::BadTestId(_) => "bad-test-id",
            Self::BadTestPath(_) => "bad-test-path",
            Self::TestFailed { .. } => "test-failed",
        }
    }
}

impl PolicyError {
    /// Builds an error at a position.
    pub fn at(file: &str, line: u64, col: u64, kind: PolicyErrorKind) -> Self {
        Self {
            file: file.to_owned(),
            line,
            col,
            kind,
        }
    }

    /// `file:line:col` (or just `file` when the whole file is meant).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.kind)
    }
}

impl std::error::Error for PolicyError {}

/// Every problem found in a policy, in file order (not just the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl From<PolicyError> for PolicyErrors {
    fn from(e: PolicyError) -> Self {
        Self(vec![e])
    }
}
