//! Keeps [`Live`] current (PRODUCT.md §5). One [`Reloader::reload`] serves file-watch events,
//! SIGHUP and the periodic re-check alike (ghostunnel's rule): it reads the policy files and
//! the certificate, key and bundle files, compares their content hashes with what it last
//! saw, builds whatever changed off to the side — the policy is parsed, validated (its
//! `tests:` included) and compiled on a blocking thread — and only then publishes it.
//! **If reloading failed, the old state is kept**; the error is logged and kept in
//! [`Live::status`] for the admin endpoint.

pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use ring::digest::{Context, SHA256};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::identity::{SpiffeId, TrustDomain};
use crate::live::Live;
use crate::policy::{PolicySource, compile};
use crate::telemetry::metrics::Metrics;
use crate::tls::Credentials;

/// The files a sidecar's state is built from, as named by its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The policy file or folder.
    pub policy: PathBuf,
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
        Self {
            policy: config.policy.clone(),
            cert: config.identity.cert.clone(),
            key: config.identity.key.clone(),
            bundles: config.identity.bundles.clone().into_iter().collect(),
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
        folders.push(parent(&self.cert));
        folders.push(parent(&self.key));
        folders.extend(self.bundles.iter().map(|(_, file)| parent(file)));
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

/// What one reload did to one part of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The files are as last seen (or the new policy has the same version): nothing to do.
    Unchanged,
    /// New state published; the next request (policy) or handshake (TLS) uses it.
    Applied,
    /// The new files are invalid; the last good state stays in force. The message names the
    /// file and the problem (every policy error at file:line:col).
    Rejected(String),
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The policy.
    pub policy: Change,
    /// Certificate, key and bundles.
    pub tls: Change,
}

/// Reloads one sidecar's policy and TLS material from its [`Sources`].
#[derive(Debug)]
pub struct Reloader {
    sources: Sources,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    own_id: SpiffeId,
    /// Content hashes last acted on; the lock also keeps reloads one at a time.
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    policy: Option<[u8; 32]>,
    tls: Option<[u8; 32]>,
}

impl Reloader {
    /// A reloader for state that was just loaded from `sources`: their current content counts
    /// as seen, so the first re-check finds nothing to do.
    pub async fn new(sources: Sources, live: Arc<Live>, metrics: Arc<Metrics>) -> Self {
        let own_id = live.tls().current().credentials().id().clone();
        let seen = Seen {
            policy: read_policy(&sources).await.ok().map(|(_, digest)| digest),
            tls: read_tls(&sources).await.ok(),
        };
        Self {
            sources,
            live,
            metrics,
            own_id,
            seen: Mutex::new(seen),
        }
    }

    /// Re-reads every source and publishes what changed and is valid; `force` (SIGHUP)
    /// rebuilds even unchanged files. Never fails: a rejected change is in the report, the log
    /// and [`Live::status`].
    pub async fn reload(&self, force: bool) -> Report {
        let mut seen = self.seen.lock().await;
        // Each part is recorded as soon as it is done, so the status never lags behind
        // the state the next request sees.
        let policy = self.reload_policy(&mut seen, force).await;
        self.record(Part::Policy, &policy);
        let tls = self.reload_tls(&mut seen, force).await;
        self.record(Part::Tls, &tls);
        Report { policy, tls }
    }

    async fn reload_policy(&self, seen: &mut Seen, force: bool) -> Change {
        let (texts, digest) = match read_policy(&self.sources).await {
            Ok(read) => read,
            Err(error) => return Change::Rejected(error),
        };
        if !force && seen.policy == Some(digest) {
            return Change::Unchanged;
        }
        // An empty file is a write in progress (truncate, then write), never a policy: taking
        // it would deny every request until the rest arrives. The next event brings it.
        if let Some((name, _)) = texts.iter().find(|(_, text)| text.trim().is_empty()) {
            return Change::Rejected(format!(
                "{name}: empty (a write in progress?); the last good policy stays"
            ));
        }
        seen.policy = Some(digest);
        let compiled = tokio::task::spawn_blocking(move || {
            let texts = texts
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str()));
            PolicySource::from_texts(texts).and_then(|source| compile(&source))
        })
        .await;
        let policy = match compiled {
            Ok(Ok(policy)) => policy,
            Ok(Err(errors)) => return Change::Rejected(errors.to_string()),
            Err(panicked) => return Change::Rejected(format!("policy compile failed: {panicked}")),
        };
        if policy.version() == self.live.policy().version() {
            return Change::Unchanged;
        }
        tracing::info!(policy_version = policy.version(), "policy reloaded");
        let old = self.live.publish_policy(policy);
        // Freeing a large policy takes milliseconds: not on a request's worker thread.
        tokio::task::spawn_blocking(move || drop(old));
        Change::Applied
    }

    async fn reload_tls(&self, seen: &mut Seen, force: bool) -> Change {
        let digest = match read_tls(&self.sources).await {
            Ok(digest) => digest,
            Err(error) => return Change::Rejected(error),
        };
        if !force && seen.tls == Some(digest) {
            return Change::Unchanged;
        }
        seen.tls = Some(digest);
        // A bundle file that is gone means its trust domain is no longer trusted: dropping
        // trust fails closed, so it applies at once (keeping it would trust a removed CA).
        let (kept, removed): (Vec<_>, Vec<_>) = self
            .sources
            .bundles
            .iter()
            .cloned()
            .partition(|(_, file)| file.exists());
        for (trust_domain, file) in &removed {
            tracing::warn!(%trust_domain, file = %file.display(), "bundle file gone; trust domain no longer accepted");
        }
        let (cert, key) = (self.sources.cert.clone(), self.sources.key.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            Credentials::load(&cert, &key, &kept, SystemTime::now())
        })
        .await;
        let credentials = match loaded {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(error)) => return Change::Rejected(error.to_string()),
            Err(panicked) => {
                return Change::Rejected(format!("certificate load failed: {panicked}"));
            }
        };
        if credentials.id() != &self.own_id {
            return Change::Rejected(format!(
                "{}: the new certificate names {}, but this sidecar is {}; restart segward to \
                 change its identity",
                self.sources.cert.display(),
                credentials.id(),
                self.own_id
            ));
        }
        match self.live.tls().publish(credentials) {
            Ok(()) => {
                tracing::info!(spiffe_id = %self.own_id, "certificate and bundles reloaded");
                Change::Applied
            }
            Err(error) => Change::Rejected(error.to_string()),
        }
    }

    /// Logs a rejection and counts the result; a rejection already recorded is not counted
    /// again (a file that stays unreadable would otherwise count once per re-check).
    fn record(&self, part: Part, change: &Change) {
        let (what, label) = match part {
            Part::Policy => ("policy", "policy"),
            Part::Tls => ("certificate/bundles", "tls"),
        };
        self.live.with_status(|status| {
            let last_error = match part {
                Part::Policy => &mut status.policy_error,
                Part::Tls => &mut status.tls_error,
            };
            match change {
                Change::Unchanged => {}
                Change::Applied => {
                    *last_error = None;
                    status.reloads_ok += 1;
                    self.metrics.reload(label, true);
                }
                Change::Rejected(error) if last_error.as_ref() != Some(error) => {
                    *last_error = Some(error.clone());
                    status.reloads_failed += 1;
                    self.metrics.reload(label, false);
                    tracing::warn!(%error, "{what} reload rejected; the last good {what} stays in force");
                }
                Change::Rejected(_) => {}
            }
        });
    }
}

/// The two parts a reload may change.
#[derive(Debug, Clone, Copy)]
enum Part {
    Policy,
    Tls,
}

/// The policy files' texts and the hash of their names and contents.
async fn read_policy(sources: &Sources) -> Result<(Vec<(String, String)>, [u8; 32]), String> {
    let path = sources.policy.clone();
    let read = tokio::task::spawn_blocking(move || PolicySource::read(&path)).await;
    let texts = match read {
        Ok(Ok(texts)) => texts,
        Ok(Err(errors)) => return Err(errors.to_string()),
        Err(panicked) => return Err(format!("reading the policy failed: {panicked}")),
    };
    let mut hash = Context::new(&SHA256);
    for (name, text) in &texts {
        add(&mut hash, name.as_bytes());
        add(&mut hash, text.as_bytes());
    }
    Ok((texts, finish(hash)))
}

/// The hash of the certificate, key and bundle files' contents; a missing bundle file counts
/// as a distinct (empty) state rather than an error.
async fn read_tls(sources: &Sources) -> Result<[u8; 32], String> {
    let mut hash = Context::new(&SHA256);
    for file in [&sources.cert, &sources.key] {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        add(&mut hash, &bytes);
    }
    for (_, file) in &sources.bundles {
        match tokio::fs::read(file).await {
            Ok(bytes) => add(&mut hash, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => hash.update(b"absent"),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
    Ok(finish(hash))
}

/// Length-prefixed, so that moving bytes between files changes the hash.
fn add(hash: &mut Context, bytes: &[u8]) {
    hash.update(&(bytes.len() as u64).to_le_bytes());
    hash.update(bytes);
}

fn finish(hash: Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.finish().as_ref());
    out
}
