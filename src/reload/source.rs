//! Where a sidecar's state comes from, as its config names it: the policy file or folder and
//! the [`CredentialSource`] — certificate, key and bundle files, or the SPIFFE Workload API
//! (docs/spire.md). The one place that says where credentials come from; the reloader reads
//! it to pick its first load and its loops.

use std::path::{Path, PathBuf};

use crate::config::{Config, IdentitySource, WorkloadApi};
use crate::identity::TrustDomain;
use crate::signing::PolicyKeys;

/// The sources a sidecar's state is built from, as named by its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The policy file or folder.
    pub policy: PathBuf,
    /// Where our SVID, its key and the trust bundles come from.
    pub credentials: CredentialSource,
    /// The keys the policy must be signed by one of (`policy_verify`), if any.
    pub policy_verify: Option<PolicyKeys>,
}

/// Where our SVID, its key and the trust bundles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// PEM files, read at start-up and re-read on every reload trigger (docs/operations.md).
    Files(TlsPaths),
    /// Streamed by the SPIRE agent: the first load waits for the first valid SVID, and every
    /// later one is published like a file rotation (docs/spire.md).
    WorkloadApi(WorkloadApi),
}

/// The files of a file-based identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// Our SVID chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Trust domain → bundle file.
    pub bundles: Vec<(TrustDomain, PathBuf)>,
}

impl Sources {
    /// The sources `config` names.
    pub fn new(config: &Config) -> Self {
        let credentials = match &config.identity {
            IdentitySource::Files(files) => CredentialSource::Files(TlsPaths {
                cert: files.cert.clone(),
                key: files.key.clone(),
                bundles: files.bundles.clone().into_iter().collect(),
            }),
            IdentitySource::WorkloadApi(api) => CredentialSource::WorkloadApi(api.clone()),
        };
        Self {
            policy: config.policy.clone(),
            credentials,
            policy_verify: config.policy_verify.clone(),
        }
    }

    /// The credential files, when the credentials come from files.
    pub fn tls_files(&self) -> Option<&TlsPaths> {
        match &self.credentials {
            CredentialSource::Files(paths) => Some(paths),
            CredentialSource::WorkloadApi(_) => None,
        }
    }

    /// The folders to watch: the policy folder itself (or a policy file's folder) and the
    /// folders of the certificate, key and bundles. Folders, not files: editors replace files
    /// by rename and Kubernetes swaps a `..data` symlink, neither of which a file watch sees.
    pub fn folders(&self) -> Vec<PathBuf> {
        let mut folders: Vec<PathBuf> = if self.policy.is_dir() {
            vec![self.policy.clone()]
        } else {
            vec![parent(&self.policy)]
        };
        if let Some(tls) = self.tls_files() {
            folders.push(parent(&tls.cert));
            folders.push(parent(&tls.key));
            folders.extend(tls.bundles.iter().map(|(_, file)| parent(file)));
        }
        folders.sort();
        folders.dedup();
        folders
    }
}

fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
        _ => PathBuf::from("."),
    }
}
