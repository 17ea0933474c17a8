//! [`ContainError`]: why a containment was not planned, written or released. Each variant
//! names the broken rule; its Display is the line `policy contain` / `policy release` print.

use std::io;

use crate::policy::PolicyErrors;

/// Why `contain` or `release` changed nothing (or failed on the file system).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainError {
    /// The sidecars watch a folder; containment works on that folder, not on a file.
    #[error(
        "{0} is not a folder; contain and release work on the policy folder the sidecars watch"
    )]
    NotAFolder(String),
    /// The policy folder as it stands cannot be read or does not compile.
    #[error("{0}")]
    PolicyInvalid(PolicyErrors),
    /// `--identity` takes a SPIFFE ID or ID pattern.
    #[error(
        "--identity {0}: give a SPIFFE ID or ID pattern (spiffe://…); for a segment use \
         --segment, for labels --labels"
    )]
    IdentityNotAnId(String),
    /// The scope is not a selector the policy can read (`flag`, text, why).
    #[error("--{0} {1}: {2}")]
    ScopeUnreadable(&'static str, String, String),
    /// `--segment` names a segment.
    #[error("--segment {0}: give a segment name; for an ID use --identity, for labels --labels")]
    SegmentNotAName(String),
    /// `--labels` is `key=value[,key=value]`.
    #[error("--labels {0}: `{0}` is not `key=value[,key=value]`")]
    LabelsWithoutPairs(String),
    /// `--labels` selects segments by labels, not by name.
    #[error("--labels {0}: give `key=value[,key=value]`")]
    LabelsNotLabels(String),
    /// A containment says why.
    #[error("--reason is empty; say why (an incident or ticket)")]
    ReasonEmpty,
    /// `--until` that looks like a time is RFC 3339 (text, why).
    #[error("--until `{0}` is not an RFC 3339 time ({1})")]
    UntilNotRfc3339(String, String),
    /// `--until` must be representable at whole seconds (text, why).
    #[error("--until `{0}`: {1}")]
    UntilUnrepresentable(String, String),
    /// `--until` that is not a time is a duration (why).
    #[error("--until: {0} (or give an RFC 3339 time, e.g. 2026-12-04T13:30:00Z)")]
    UntilNotADuration(String),
    /// `--until` as a duration must end at a representable time.
    #[error("--until `{0}` is too far in the future")]
    UntilTooFar(String),
    /// A containment ends after it begins (until, now; RFC 3339).
    #[error("--until {0} is not in the future (now is {1}); a containment must end later")]
    UntilNotInFuture(String, String),
    /// The id names a file directly inside the policy folder (text, hint).
    #[error(
        "`{0}` is not a containment id (like c-20261203-1330-7f3a, as `policy contain` \
         printed it){1}"
    )]
    NotAnId(String, String),
    /// A fresh id needs the system random source.
    #[error("the system random source failed")]
    NoRandom,
    /// Sixteen random ids of this minute were all taken (the folder).
    #[error("no free containment id in {0} this minute")]
    NoFreeId(String),
    /// Nothing is written unless the policy with the containment compiles, `tests:`
    /// included (folder, the errors, whether a test failed).
    #[error(
        "with this containment the policy in {dir} would be invalid (see above); nothing was \
         written"
    )]
    InvalidWith {
        /// The policy folder.
        dir: String,
        /// What is wrong with the policy with the containment.
        errors: PolicyErrors,
        /// Whether a `tests:` case failed (suspending them may help).
        tests_failed: bool,
    },
    /// Release names a containment file in the folder (id, folder, file).
    #[error("no containment {0} in {1} (no file {2})")]
    NoSuchContainment(String, String, String),
    /// Releasing must leave a policy (file, folder).
    #[error("{0} is the only policy file in {1}; releasing it would leave no policy")]
    OnlyPolicyFile(String, String),
    /// Nothing is removed unless the policy without the file compiles (file, folder, errors).
    #[error("without {0} the policy in {1} is invalid (see above); nothing was removed")]
    InvalidWithout(String, String, PolicyErrors),
    /// A scope is not a selector, or the reach walk gave up.
    #[error("{0}")]
    Reach(#[from] crate::policy::QueryError),
    /// The containment file names no scope to compute a reach for.
    #[error("a containment file with no entry")]
    NoScopes,
    /// A file-system step failed (what was being done, the I/O error).
    #[error("{0}: {1}")]
    Io(String, String),
}

impl ContainError {
    /// An I/O failure while `doing` something (`writing <file>`).
    pub(super) fn io(doing: String, e: &io::Error) -> Self {
        Self::Io(doing, e.to_string())
    }
}
