//! [`ReloadError`]: why a (re)load did not publish — which part, which file, why. The one
//! value that `/policy` (its text), the process log and the `segward_reload_rejections_total`
//! metric (its [`ReloadError::reason`]) all read, at start-up and on every reload.

use std::fmt;

use crate::identity::SpiffeId;
use crate::policy::PolicyErrors;
use crate::signing::SignatureError;
use crate::tls::TlsError;

/// The two parts of a sidecar's state that (re)loads build and publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The policy files.
    Policy,
    /// Certificate, key and trust bundles.
    Tls,
}

impl Part {
    /// The metric label (`what`): `policy` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Tls => "tls",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Policy => "policy",
            Self::Tls => "certificate/bundles",
        })
    }
}

/// Why a (re)load of one part was refused. At start-up it is fatal (fail closed); on reload
/// the last good state stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The policy file or folder could not be read (missing, unreadable, over the size cap).
    #[error("{0}")]
    PolicyUnreadable(PolicyErrors),
    /// "An empty file is a write in progress, never a policy": taking it would deny every
    /// request until the rest of the write arrives.
    #[error("{file}: empty (a write in progress?)")]
    EmptyPolicyFile {
        /// The empty file.
        file: String,
    },
    /// docs/policy-language.md: invalid policy (syntax, unknown key or segment, bad pattern, duplicate
    /// name, failing `tests:`) is rejected with file:line:col — every error listed.
    #[error("{0}")]
    InvalidPolicy(PolicyErrors),
    /// docs/fleet.md#signed-policy: under `policy_verify`, a policy whose signature is
    /// missing, invalid or by none of the keys is refused like a broken one.
    #[error("{0}")]
    PolicySignature(SignatureError),
    /// The certificate, key or a bundle file could not be read.
    #[error("{0}")]
    TlsUnreadable(TlsError),
    /// docs/operations.md: "a cert/key pair that does not match is rejected and the old pair
    /// stays" — and so is any certificate, key or bundle that fails its checks.
    #[error("{0}")]
    InvalidTls(TlsError),
    /// With identity from files the ID is fixed for the process's life: a new certificate
    /// file must name the same ID (the Workload API may rotate it: `NewIdentityPolicy`).
    #[error(
        "{file}: the new certificate names {found}, but this sidecar is {own}; restart segward \
         to change its identity"
    )]
    IdentityChanged {
        /// The certificate file.
        file: String,
        /// The ID the new certificate names.
        found: SpiffeId,
        /// The sidecar's own ID.
        own: SpiffeId,
    },
    /// docs/spire.md "Rotation to another SPIFFE ID": the Workload API sent an SVID for another
    /// ID, and the policy in force does not build for it (its slice's `tests:` fail, …): the
    /// SVID, slice and ID in force stay.
    #[error(
        "the SPIFFE Workload API sent an X509-SVID for {found}, but the policy in force does not \
         build for that ID, so {own} and its SVID stay in force:\n{cause}"
    )]
    NewIdentityPolicy {
        /// The ID the new SVID names.
        found: SpiffeId,
        /// The sidecar's own ID, still in force.
        own: SpiffeId,
        /// Why the slice for `found` did not build.
        cause: Box<ReloadError>,
    },
    /// docs/spire.md: the Workload API client stopped (shutdown) before a valid SVID came.
    #[error("no X509-SVID arrived from the SPIFFE Workload API before it stopped")]
    NoSvid,
    /// The work thread reading or building `part` panicked; nothing was published.
    #[error("{part} load failed: {message}")]
    Panicked {
        /// What was being built.
        part: Part,
        /// What the panic said.
        message: String,
    },
}

impl ReloadError {
    /// Which part the error is about.
    pub fn part(&self) -> Part {
        match self {
            Self::PolicyUnreadable(_)
            | Self::EmptyPolicyFile { .. }
            | Self::InvalidPolicy(_)
            | Self::PolicySignature(_) => Part::Policy,
            Self::TlsUnreadable(_)
            | Self::InvalidTls(_)
            | Self::IdentityChanged { .. }
            | Self::NewIdentityPolicy { .. }
            | Self::NoSvid => Part::Tls,
            Self::Panicked { part, .. } => *part,
        }
    }

    /// Short, bounded label for the metric (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::PolicyUnreadable(_) => "policy-unreadable",
            Self::EmptyPolicyFile { .. } => "empty-policy-file",
            Self::InvalidPolicy(_) => "invalid-policy",
            Self::PolicySignature(_) => "policy-signature",
            Self::TlsUnreadable(_) => "tls-unreadable",
            Self::InvalidTls(_) => "invalid-tls",
            Self::IdentityChanged { .. } => "identity-changed",
            Self::NewIdentityPolicy { .. } => "new-identity-policy",
            Self::NoSvid => "no-svid",
            Self::Panicked { .. } => "panicked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyErrors;

    #[test]
    fn every_error_names_its_part_and_a_reason_of_its_own() {
        let id = SpiffeId::parse("spiffe://example.org/a").unwrap();
        let tls = TlsError::NoBundles;
        let errors = [
            ReloadError::PolicyUnreadable(PolicyErrors(Vec::new())),
            ReloadError::EmptyPolicyFile { file: "p".into() },
            ReloadError::InvalidPolicy(PolicyErrors(Vec::new())),
            ReloadError::PolicySignature(SignatureError::Missing {
                policy: "p".into(),
                file: "p/policy.sig".into(),
            }),
            ReloadError::TlsUnreadable(tls.clone()),
            ReloadError::InvalidTls(tls),
            ReloadError::IdentityChanged {
                file: "c".into(),
                found: id.clone(),
                own: id.clone(),
            },
            ReloadError::NewIdentityPolicy {
                found: id.clone(),
                own: id,
                cause: Box::new(ReloadError::NoSvid),
            },
            ReloadError::NoSvid,
            ReloadError::Panicked {
                part: Part::Tls,
                message: "m".into(),
            },
        ];
        let parts: Vec<_> = errors.iter().map(ReloadError::part).collect();
        use Part::{Policy, Tls};
        assert_eq!(
            parts,
            [Policy, Policy, Policy, Policy, Tls, Tls, Tls, Tls, Tls, Tls]
        );
        let mut reasons: Vec<_> = errors.iter().map(ReloadError::reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), errors.len());
    }
}
