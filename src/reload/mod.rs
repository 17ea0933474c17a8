//! Keeps [`Live`] current (docs/operations.md): the one owner of every (re)load and every loop
//! that triggers one. [`Reloader::start`] makes the first state and [`Reloader::reload`]
//! every later one — on file-watch events, SIGHUP and the periodic re-check alike
//! (ghostunnel's rule) — by the same steps: read the policy files and the certificate, key and
//! bundle files once, hash exactly those bytes, build what changed off to the side (the
//! policy is parsed and validated whole, and the slice for the sidecar's own identity compiled
//! with its `tests:` on a blocking thread: docs/fleet.md "Slices"), and only
//! then publish it. Where the credentials come from is the [`CredentialSource`]: files, or
//! the SPIFFE Workload API, whose updates [`Reloader::apply_svid`] publishes like a file
//! rotation — and an update naming another SPIFFE ID re-slices: the slice for the new ID is
//! built from the texts in force and published with the new SVID (docs/spire.md). The
//! policy-expiry schedule publishes successors (`expiry.rs`); [`Loops`] runs all of these.
//! **If reloading failed, the old state is kept**; the [`ReloadError`] is logged, counted and
//! kept in the [`ReloadStatus`] for `/policy`.

mod build;
mod error;
mod expiry;
mod files;
mod loops;
mod source;
mod status;
mod watch;

use std::sync::Arc;

use tokio::sync::{Mutex, Notify};

use build::{Stage, build_credentials, build_policy, check_policy, slice_policy};
pub use error::{Part, ReloadError};
use files::Digest;
pub use loops::Loops;
pub use source::{CredentialSource, Sources, TlsPaths};
pub use status::{ReloadStatus, StatusBoard};

use crate::live::{Live, Snapshot};
use crate::telemetry::metrics::Metrics;
use crate::tls::{Credentials, LiveTls, TlsMaterial};
use crate::workload_api::Update;

/// What one reload did to one part of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The files are as last seen (or the new policy has the same version): nothing to do.
    Unchanged,
    /// New state published; the next request (policy) or handshake (TLS) uses it.
    Applied,
    /// The new files are invalid; the last good state stays in force.
    Rejected(ReloadError),
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The policy.
    pub policy: Change,
    /// Certificate, key and bundles.
    pub tls: Change,
}

/// A test seam: runs once, between the first read of the sources and the build of the first
/// state from those bytes (a write landing there must still take effect). Production passes
/// none.
pub type ReadHook = Box<dyn FnOnce() + Send>;

/// Reloads one sidecar's policy and TLS material from its [`Sources`].
#[derive(Debug)]
pub struct Reloader {
    sources: Sources,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    status: Arc<StatusBoard>,
    /// Content hashes of the bytes the state in force was built from (or last refused);
    /// the lock also keeps reloads one at a time.
    seen: Mutex<Seen>,
    /// The policy texts the policy in force was built from (its successors are built from
    /// them too, `expiry.rs`).
    texts: std::sync::Mutex<PolicyTexts>,
    /// Woken whenever a reload publishes a policy (the expiry schedule starts over).
    published: Notify,
}

/// Policy file names and texts, shared without copying.
type PolicyTexts = Arc<Vec<(String, String)>>;

#[derive(Debug, Default)]
struct Seen {
    policy: Option<Digest>,
    tls: Option<Digest>,
}

impl Reloader {
    /// The first load: reads every source once and builds the first state from those bytes,
    /// recording their hashes as seen, so a write landing after the read is a change the next
    /// trigger picks up. `hook` runs between the read and the build (tests only). With the
    /// Workload API as the credential source, the credentials are the first valid update of the
    /// client [`Loops::arm`] started: refused ones are logged and counted, and the wait goes on.
    ///
    /// # Errors
    /// The first part that is unreadable or invalid: nothing starts without a valid policy,
    /// certificate, key and bundles (fail closed); [`ReloadError::NoSvid`] when the Workload
    /// API client stopped before a valid SVID arrived.
    pub async fn start(
        sources: Sources,
        metrics: Arc<Metrics>,
        hook: Option<ReadHook>,
        loops: &mut Loops,
    ) -> Result<Self, ReloadError> {
        let policy_files = files::read_policy(&sources).await?;
        let texts = Arc::new(policy_files.texts);
        files::verify_policy(&sources, &texts).await?;
        let tls_files = match sources.tls_files() {
            Some(paths) => Some(files::read_tls(paths).await?),
            None => None,
        };
        if let Some(hook) = hook {
            hook();
        }
        let seen = Seen {
            policy: Some(policy_files.digest),
            tls: tls_files.as_ref().map(|files| files.digest),
        };
        let checked = check_policy(texts.clone()).await?;
        let status = Arc::new(StatusBoard::new());
        let credentials = match tls_files {
            Some(files) => build_credentials(files, Stage::Start).await?,
            None => loops.first_svid(&status, &metrics).await?,
        };
        // The policy in force is the slice for this identity (docs/fleet.md "Slices"): known
        // only now, from the credentials.
        let own_id = credentials.id().clone();
        let policy = slice_policy(checked, own_id.clone()).await?;
        let tls = LiveTls::new(credentials).map_err(ReloadError::InvalidTls)?;
        Ok(Self {
            sources,
            live: Arc::new(Live::new(Snapshot::new(policy, own_id), tls)),
            metrics,
            status,
            seen: Mutex::new(seen),
            texts: std::sync::Mutex::new(texts),
            published: Notify::new(),
        })
    }

    /// The texts the policy in force was built from.
    fn texts(&self) -> PolicyTexts {
        // A poisoned lock still holds the last texts stored whole.
        let texts = self
            .texts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        texts.clone()
    }

    /// The state this reloader keeps current.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// What the reloads did so far, shared with its readers (the admin endpoint).
    pub fn status(&self) -> &Arc<StatusBoard> {
        &self.status
    }

    /// Re-reads every source and publishes what changed and is valid; `force` (SIGHUP)
    /// rebuilds even unchanged files. Never fails: a rejected change is in the report, the log
    /// and the [`ReloadStatus`].
    pub async fn reload(&self, force: bool) -> Report {
        let mut seen = self.seen.lock().await;
        // Each part is recorded as soon as it is done, so the status never lags behind
        // the state the next request sees.
        let policy = change(self.reload_policy(&mut seen, force).await);
        self.record(Part::Policy, &policy);
        let tls = change(self.reload_tls(&mut seen, force).await);
        self.record(Part::Tls, &tls);
        Report { policy, tls }
    }

    /// `Ok(true)` when a new policy was published.
    async fn reload_policy(&self, seen: &mut Seen, force: bool) -> Result<bool, ReloadError> {
        let files = files::read_policy(&self.sources).await?;
        if !force && seen.policy == Some(files.digest) {
            // Texts as large as the policy: freed where their pages can be given back.
            files::release(files);
            return Ok(false);
        }
        seen.policy = Some(files.digest);
        let texts = Arc::new(files.texts);
        files::verify_policy(&self.sources, &texts).await?;
        // The own ID only changes under this lock (`apply_svid`): the slice is for the one
        // in force.
        let own = self.live.published_policy().own_id().clone();
        let policy = build_policy(texts.clone(), own.clone()).await?;
        if policy.version() == self.live.published_policy().version() {
            files::release((policy, texts));
            return Ok(false);
        }
        tracing::info!(policy_version = policy.version(), "policy reloaded");
        let old = self.live.publish_policy(Snapshot::new(policy, own));
        let old_texts = std::mem::replace(
            &mut *self
                .texts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            texts,
        );
        self.published.notify_one();
        files::release((old, old_texts));
        Ok(true)
    }

    /// `Ok(true)` when new TLS material was published.
    async fn reload_tls(&self, seen: &mut Seen, force: bool) -> Result<bool, ReloadError> {
        let Some(paths) = self.sources.tls_files() else {
            // The Workload API pushes its updates ([`Reloader::apply_svid`]).
            return Ok(false);
        };
        let files = files::read_tls(paths).await?;
        if !force && seen.tls == Some(files.digest) {
            return Ok(false);
        }
        seen.tls = Some(files.digest);
        let cert_file = files.cert.0.display().to_string();
        let credentials = build_credentials(files, Stage::Reload).await?;
        let own = self.live.published_policy().own_id().clone();
        if credentials.id() != &own {
            return Err(ReloadError::IdentityChanged {
                file: cert_file,
                found: credentials.id().clone(),
                own,
            });
        }
        self.live
            .tls()
            .publish(credentials)
            .map_err(ReloadError::InvalidTls)?;
        tracing::info!(spiffe_id = %own, "certificate and bundles reloaded");
        Ok(true)
    }

    /// Publishes one SPIFFE Workload API update like a file rotation: the next handshake
    /// presents the new SVID and trusts the new bundles; open connections carry on. An update
    /// naming another SPIFFE ID re-slices (docs/spire.md "Rotation to another SPIFFE ID"): the
    /// slice for the new ID is built from the policy texts in force, and only if it builds are
    /// it and the SVID published together ([`Live::publish_identity`]). A refused update
    /// leaves the SVID, the slice and the ID in force.
    pub async fn apply_svid(&self, update: Update) -> Change {
        let _one_at_a_time = self.seen.lock().await;
        let outcome = match update.map_err(ReloadError::InvalidTls) {
            Ok(credentials) => self.publish_svid(credentials).await,
            Err(error) => Err(error),
        };
        let change = change(outcome);
        self.record(Part::Tls, &change);
        change
    }

    /// [`Reloader::apply_svid`] of valid credentials, under the reload lock.
    async fn publish_svid(&self, credentials: Credentials) -> Result<bool, ReloadError> {
        let in_force = self.live.published_policy();
        let not_after = crate::policy::format_time(credentials.not_after());
        if credentials.id() == in_force.own_id() {
            self.live
                .tls()
                .publish(credentials)
                .map_err(ReloadError::InvalidTls)?;
            tracing::info!(
                spiffe_id = %in_force.own_id(),
                %not_after,
                "X509-SVID and bundles from the SPIFFE Workload API in force"
            );
            return Ok(true);
        }
        let (found, own) = (credentials.id().clone(), in_force.own_id().clone());
        let material = TlsMaterial::new(credentials).map_err(ReloadError::InvalidTls)?;
        let policy = build_policy(self.texts(), found.clone())
            .await
            .map_err(|cause| ReloadError::NewIdentityPolicy {
                found: found.clone(),
                own: own.clone(),
                cause: Box::new(cause),
            })?;
        let rules = policy.rules().len();
        let old = self
            .live
            .publish_identity(Snapshot::new(policy, found.clone()), material);
        drop(in_force);
        self.published.notify_one();
        files::release(old);
        tracing::warn!(
            spiffe_id = %found,
            previous = %own,
            rules,
            %not_after,
            "own SPIFFE ID changed (SPIFFE Workload API): the policy is re-sliced for the new ID \
             and its X509-SVID is in force; open connections are decided again as the new ID"
        );
        Ok(true)
    }

    /// Publishes `next`, the successor of `base` due now (`expiry.rs`), unless a reload
    /// replaced `base` meanwhile (then `next` is stale).
    async fn publish_successor(&self, base: &Snapshot, next: Arc<Snapshot>) {
        let _one_at_a_time = self.seen.lock().await;
        let in_force = self.live.published_policy();
        // Same texts, another ID (a rotation) have the same version: compare both.
        if in_force.version() != base.version() || in_force.own_id() != base.own_id() {
            return;
        }
        tracing::info!(
            policy_version = next.version(),
            previous = base.version(),
            "an exception expired or a containment lifted: successor policy in force"
        );
        let old = self.live.publish_arc(next);
        files::release(old);
    }

    /// Woken whenever a reload publishes a policy (the expiry schedule starts over).
    fn policy_published(&self) -> &Notify {
        &self.published
    }

    /// Keeps the outcome in the status; counts and logs it unless it is a rejection already
    /// recorded.
    fn record(&self, part: Part, change: &Change) {
        record(&self.status, &self.metrics, part, change);
    }
}

fn record(status: &StatusBoard, metrics: &Metrics, part: Part, change: &Change) {
    let outcome = match change {
        Change::Unchanged => return,
        Change::Applied => Ok(()),
        Change::Rejected(error) => Err(error),
    };
    if !status.note(part, outcome) {
        return;
    }
    let rejected = outcome.err().map(ReloadError::reason);
    metrics.reload(part.as_str(), rejected);
    if let Err(error) = outcome {
        tracing::warn!(
            %error,
            reason = error.reason(),
            "{part} reload rejected; the last good {part} stays in force"
        );
    }
}

fn change(outcome: Result<bool, ReloadError>) -> Change {
    match outcome {
        Ok(true) => Change::Applied,
        Ok(false) => Change::Unchanged,
        Err(error) => Change::Rejected(error),
    }
}
