//! `contain` as plan, then write: [`Plan::new`] reads the policy folder, checks the scope
//! against the policy as it stands, compiles the policy with the new file in memory
//! (`tests:` included) and computes the reach it removes; [`Plan::write`] then puts the file
//! into the folder atomically, refusing to replace another. Nothing is written unless the
//! plan was made.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::file::{Containment, ContainmentId, Scope};
use super::reach_change::ReachChange;
use super::until::parse_until;
use super::{ContainError, compile, policy_texts};
use crate::atomic_file::AtomicWrite;
use crate::policy::{CompiledPolicy, PolicyErrorKind, PolicyErrors, Selector};

/// The scope as the operator gave it: `--identity`, `--segment` or `--labels`, unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// A SPIFFE ID or ID pattern.
    Identity(String),
    /// A segment name.
    Segment(String),
    /// `key=value[,key=value]`.
    Labels(String),
}

/// What the operator asks for: the scope, why, until when, and who writes the file.
#[derive(Debug, Clone)]
pub struct Order {
    /// What to revoke.
    pub scope: Asked,
    /// Why (an incident or ticket); must not be blank.
    pub reason: String,
    /// A duration from now or an RFC 3339 time; `None`: until released.
    pub until: Option<String>,
    /// Suspend the `tests:` whose source the containment revokes instead of refusing.
    pub suspend_tests: bool,
    /// The program that writes the file, for its header.
    pub writer: &'static str,
    /// `user@host`, for its header.
    pub author: String,
}

/// A containment checked against its policy folder, ready to write.
#[derive(Debug)]
pub struct Plan {
    /// The containment.
    pub containment: Containment,
    /// The policy folder as the operator named it.
    pub dir: String,
    /// The file it writes: `<dir>/contain-<ID>.yaml`.
    pub file: PathBuf,
    /// The file's text.
    pub yaml: String,
    /// The policy as it stands.
    pub before: CompiledPolicy,
    /// The policy with the containment.
    pub after: CompiledPolicy,
    /// The reach the containment removes.
    pub change: ReachChange,
    /// The segments a segment or label scope names (none for an identity scope).
    pub segments: Vec<String>,
}

/// A written containment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Its path.
    pub file: PathBuf,
}

impl Plan {
    /// Plans containing `order` in the policy folder `dir` at `now`.
    ///
    /// # Errors
    /// The folder, its policy, the order, or the policy with the containment is refused.
    pub fn new(dir: &Path, order: &Order, now: OffsetDateTime) -> Result<Plan, ContainError> {
        let texts = policy_texts(dir)?;
        let before = compile(&texts).map_err(ContainError::PolicyInvalid)?;
        let containment = containment_of(dir, order, &before, now)?;
        let dir_text = dir.display().to_string();
        let file = dir.join(containment.id.file_name());
        let yaml = containment.to_yaml(&dir_text);
        let mut with = texts;
        with.push((file.display().to_string(), yaml.clone()));
        with.sort();
        let after = compile(&with).map_err(|errors| invalid_with(&dir_text, errors))?;
        let selector = containment.scope.selector_text();
        let change = ReachChange::of(&before, &after, &[selector])?;
        let segments = scope_segments(&before, &containment.scope);
        Ok(Plan {
            containment,
            dir: dir_text,
            file,
            yaml,
            before,
            after,
            change,
            segments,
        })
    }

    /// Writes the file: whole or not at all, durably, and never over another file.
    ///
    /// # Errors
    /// [`ContainError::Io`].
    pub fn write(&self) -> Result<Written, ContainError> {
        AtomicWrite::new()
            .create_new()
            .write(&self.file, &self.yaml)
            .map_err(|e| ContainError::io(format!("writing {}", self.file.display()), &e))?;
        Ok(Written {
            file: self.file.clone(),
        })
    }
}

fn invalid_with(dir: &str, errors: PolicyErrors) -> ContainError {
    let tests_failed = errors
        .0
        .iter()
        .any(|e| matches!(e.kind, PolicyErrorKind::TestFailed { .. }));
    ContainError::InvalidWith {
        dir: dir.to_owned(),
        errors,
        tests_failed,
    }
}

/// The containment `order` asks for, checked against the policy as it stands.
fn containment_of(
    dir: &Path,
    order: &Order,
    policy: &CompiledPolicy,
    now: OffsetDateTime,
) -> Result<Containment, ContainError> {
    let scope = scope_of(&order.scope, policy)?;
    let reason = order.reason.trim();
    if reason.is_empty() {
        return Err(ContainError::ReasonEmpty);
    }
    let until = order
        .until
        .as_deref()
        .map(|u| parse_until(u, now))
        .transpose()?;
    Ok(Containment {
        id: fresh_id(dir, now)?,
        scope,
        reason: reason.to_owned(),
        since: now,
        until,
        writer: order.writer,
        author: order.author.clone(),
        suspend_tests: order.suspend_tests,
    })
}

/// The scope asked for, as `policy reach` reads selectors.
fn scope_of(asked: &Asked, policy: &CompiledPolicy) -> Result<Scope, ContainError> {
    let parse = |flag: &'static str, text: &str| {
        Selector::parse(policy, text)
            .map_err(|e| ContainError::ScopeUnreadable(flag, text.to_owned(), e.to_string()))
    };
    match asked {
        Asked::Identity(text) => {
            if !text.trim().starts_with("spiffe://") {
                return Err(ContainError::IdentityNotAnId(text.clone()));
            }
            parse("identity", text)?;
            Ok(Scope::Identity(text.trim().to_owned()))
        }
        Asked::Segment(text) => match parse("segment", text)? {
            Selector::Segment(s) => Ok(Scope::Segment(policy.segments()[s as usize].name.clone())),
            _ => Err(ContainError::SegmentNotAName(text.clone())),
        },
        Asked::Labels(text) => {
            if !text.contains('=') {
                return Err(ContainError::LabelsWithoutPairs(text.clone()));
            }
            match parse("labels", text)? {
                Selector::Labels(labels, _) => Ok(Scope::Labels(labels)),
                _ => Err(ContainError::LabelsNotLabels(text.clone())),
            }
        }
    }
}

/// The segments a segment or label scope names (none for an identity scope).
fn scope_segments(policy: &CompiledPolicy, scope: &Scope) -> Vec<String> {
    match scope {
        Scope::Identity(_) => Vec::new(),
        Scope::Segment(name) => vec![name.clone()],
        Scope::Labels(labels) => policy
            .segments()
            .iter()
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.name.clone())
            .collect(),
    }
}

/// An id whose file does not exist yet in `dir`.
fn fresh_id(dir: &Path, now: OffsetDateTime) -> Result<ContainmentId, ContainError> {
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..16 {
        let mut random = [0u8; 2];
        ring::rand::SecureRandom::fill(&rng, &mut random).map_err(|_| ContainError::NoRandom)?;
        let id = ContainmentId::new(now, random);
        if !dir.join(id.file_name()).exists() {
            return Ok(id);
        }
    }
    Err(ContainError::NoFreeId(dir.display().to_string()))
}
