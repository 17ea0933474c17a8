//! What the sources hold right now: each part's files read once, on a blocking thread, with
//! the hash of exactly those bytes. A (re)load builds from the bytes it hashed, never from a
//! second read, so the hash it records is always the hash of the state it built (a write
//! landing in between is a new hash, picked up by the next trigger).
//!
//! The policy's work (read, parse, compile) runs on one long-lived thread, `segward-policy`,
//! not on tokio's blocking pool: glibc's malloc gives each thread that allocates its own
//! arena and keeps freed pages of an arena mapped, so building a large policy on whichever
//! pool thread is free left a policy-sized heap behind in each of them, and RSS grew with
//! every reload (docs/performance.md, "Fleet-scale policy": 143 MB after start, 484 MB
//! after 12 reloads of the bench fleet). On one thread every build reuses the same arena.
//! After each build, and after dropping a policy it replaced, the thread gives the free pages
//! back to the kernel (`segward_heap::release_free_pages`): glibc keeps pages freed below live
//! memory resident, so without it RSS stayed at the high-water mark of the last two builds.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ring::digest::{Context, SHA256};

use super::error::{Part, ReloadError};
use super::source::{Sources, TlsPaths};
use crate::identity::TrustDomain;
use crate::policy::PolicySource;
use crate::signing::PolicyKeys;
use crate::tls::{TlsError, read_file};

/// A content hash (SHA-256).
pub(super) type Digest = [u8; 32];

/// The policy files' names and texts, in name order.
pub(super) struct PolicyFiles {
    pub(super) texts: Vec<(String, String)>,
    pub(super) digest: Digest,
}

/// The certificate, key and bundle files' contents; a bundle file that is gone is the error
/// its read gave.
pub(super) struct TlsFiles {
    pub(super) cert: (PathBuf, Vec<u8>),
    pub(super) key: (PathBuf, Vec<u8>),
    pub(super) bundles: Vec<(TrustDomain, PathBuf, Result<Vec<u8>, TlsError>)>,
    pub(super) digest: Digest,
}

/// Runs `work` off the runtime — the policy's on the policy thread, the rest on a blocking
/// thread; a panic there becomes the error of `part`.
pub(super) async fn blocking<T: Send + 'static>(
    part: Part,
    work: impl FnOnce() -> Result<T, ReloadError> + Send + 'static,
) -> Result<T, ReloadError> {
    if part == Part::Policy {
        return on_policy_thread(work, false).await;
    }
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|panicked| {
            Err(ReloadError::Panicked {
                part,
                message: panicked.to_string(),
            })
        })
}

/// Runs a policy build (check, cut, compile) on the policy thread and waits for it without
/// blocking the runtime; what the build freed is then given back to the kernel.
pub(super) async fn building<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ReloadError> + Send + 'static,
) -> Result<T, ReloadError> {
    on_policy_thread(work, true).await
}

/// A unit of policy work, sent to the policy thread.
type Job = Box<dyn FnOnce() + Send>;

/// The policy thread's queue, started on first use (every sidecar of the process shares it:
/// one build at a time, one arena).
static POLICY_THREAD: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

/// Runs `work` on the policy thread and waits for it without blocking the runtime; with
/// `release`, then gives the pages it freed back to the kernel (after its result is sent).
async fn on_policy_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ReloadError> + Send + 'static,
    release: bool,
) -> Result<T, ReloadError> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let outcome = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(ReloadError::Panicked {
                part: Part::Policy,
                message,
            })
        });
        let _ = done.send(outcome);
        if release {
            release_free_pages();
        }
    });
    submit(job);
    result.await.unwrap_or_else(|_| {
        Err(ReloadError::Panicked {
            part: Part::Policy,
            message: "the policy thread stopped".to_owned(),
        })
    })
}

/// Queues `job` for the policy thread; if the thread is gone (it could not be spawned), starts
/// another for it. A job that cannot run is dropped, which its waiter sees as an error.
fn submit(job: Job) {
    let queue = POLICY_THREAD.get_or_init(|| Mutex::new(start_policy_thread()));
    let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(returned) = queue.send(job) {
        *queue = start_policy_thread();
        let _ = queue.send(returned.0);
    }
}

/// Spawns the thread that runs policy jobs one after another, for the life of the process.
fn start_policy_thread() -> Sender<Job> {
    let (queue, jobs) = channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("segward-policy".to_owned())
        .spawn(move || jobs.into_iter().for_each(|job| job()));
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the policy thread");
    }
    queue
}

/// Drops `old` (a policy replaced, the texts it was built from) on the policy thread, whose
/// arena holds it, and gives the pages it held back to the kernel. Freeing a large policy
/// takes milliseconds: never on a request's worker thread.
pub(super) fn release(old: impl Send + 'static) {
    submit(Box::new(move || {
        drop(old);
        release_free_pages();
    }));
}

/// glibc keeps pages freed below live memory resident for good: what a build or a replaced
/// policy freed would keep RSS at the high-water mark of the last two builds
/// (docs/performance.md, "Fleet-scale policy"). A few milliseconds on the policy thread.
fn release_free_pages() {
    let _ = segward_heap::release_free_pages();
}

/// Reads every policy file the policy path stands for.
pub(super) async fn read_policy(sources: &Sources) -> Result<PolicyFiles, ReloadError> {
    let path = sources.policy.clone();
    blocking(Part::Policy, move || {
        let texts = PolicySource::read(&path).map_err(ReloadError::PolicyUnreadable)?;
        let mut hash = Context::new(&SHA256);
        for (name, text) in &texts {
            add(&mut hash, name.as_bytes());
            add(&mut hash, text.as_bytes());
        }
        Ok(PolicyFiles {
            texts,
            digest: finish(hash),
        })
    })
    .await
}

/// docs/fleet.md#signed-policy: under `policy_verify`, the signature must cover exactly the
/// bytes read — the ones the build compiles — or the policy is refused like a broken one.
/// Called once per new content, as a build is: bytes whose digest was already seen were
/// verified then, by the same keys (they are read once, at start).
pub(super) async fn verify_policy(
    sources: &Sources,
    texts: &Arc<Vec<(String, String)>>,
) -> Result<(), ReloadError> {
    let Some(keys) = sources.policy_verify.clone() else {
        return Ok(());
    };
    let (path, texts) = (sources.policy.clone(), texts.clone());
    blocking(Part::Policy, move || {
        check_signature(Some(&keys), &path, &texts)
    })
    .await
}

fn check_signature(
    keys: Option<&PolicyKeys>,
    path: &Path,
    texts: &[(String, String)],
) -> Result<(), ReloadError> {
    let Some(keys) = keys else { return Ok(()) };
    let files = texts
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_bytes()));
    keys.verify(path, files)
        .map(drop)
        .map_err(ReloadError::PolicySignature)
}

/// Reads the certificate, key and bundle files; a missing bundle file counts as a distinct
/// (absent) state rather than an error — what it means is the builder's call.
pub(super) async fn read_tls(sources: &TlsPaths) -> Result<TlsFiles, ReloadError> {
    let sources = sources.clone();
    blocking(Part::Tls, move || {
        let mut hash = Context::new(&SHA256);
        let cert = read_file(&sources.cert).map_err(ReloadError::TlsUnreadable)?;
        add(&mut hash, &cert);
        let key = read_file(&sources.key).map_err(ReloadError::TlsUnreadable)?;
        add(&mut hash, &key);
        let mut bundles = Vec::with_capacity(sources.bundles.len());
        for (trust_domain, file) in sources.bundles {
            let bytes = read_file(&file);
            match &bytes {
                Ok(bytes) => add(&mut hash, bytes),
                Err(_) if !file.exists() => hash.update(b"absent"),
                Err(error) => return Err(ReloadError::TlsUnreadable(error.clone())),
            }
            bundles.push((trust_domain, file, bytes));
        }
        Ok(TlsFiles {
            cert: (sources.cert, cert),
            key: (sources.key, key),
            bundles,
            digest: finish(hash),
        })
    })
    .await
}

/// Length-prefixed, so that moving bytes between files changes the hash.
fn add(hash: &mut Context, bytes: &[u8]) {
    hash.update(&(bytes.len() as u64).to_le_bytes());
    hash.update(bytes);
}

fn finish(hash: Context) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn policy_work_runs_on_the_policy_thread_which_outlives_a_panic() {
        let panicked = blocking(Part::Policy, || -> Result<(), ReloadError> {
            panic!("boom")
        });
        let panicked = panicked.await;
        assert!(
            matches!(&panicked, Err(ReloadError::Panicked { part: Part::Policy, message }) if message == "boom"),
            "{panicked:?}"
        );
        let name = || Ok(std::thread::current().name().map(str::to_owned));
        let on = blocking(Part::Policy, name).await;
        assert_eq!(on, Ok(Some("segward-policy".to_owned())));
        let on = blocking(Part::Tls, name).await;
        assert_ne!(on, Ok(Some("segward-policy".to_owned())));
    }
}
