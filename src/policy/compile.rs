//! `compile`: a parsed [`PolicySource`] → an immutable, indexed [`CompiledPolicy`], or every
//! error in it at file:line:col; then the policy's own `tests:` run (PRODUCT.md §3).
//!
//! Index layout, so a decision never scans the rule list:
//! - segments live in an [`IdentityIndex`] trie per trust domain;
//! - each distinct label selector becomes a *group*; a segment knows its groups;
//! - "keys" are segment ids, then group ids, then one `ANY` key for `"*"`;
//! - rules are filed under every (destination key, source key) pair they name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::classify::{Classifier, build_classifier};
use super::error::PolicyErrors;
use super::load::PolicySource;
use super::method::MethodSet;
use super::pattern::{IdentityPattern, PathPattern};
use super::source::Effect;
use super::tests_run::run_tests;
use super::trie::IdentityIndex;
use super::validate::{Parts, validate};
use super::version::version_of;

/// Source of [`CompiledPolicy`] instance numbers.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// Marks a trie value as a `revoked` entry rather than a segment id.
pub(super) const REVOKED: u32 = 1 << 31;

/// Where something was written: index into the policy's files, line, column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// Index into [`CompiledPolicy::files`].
    pub file: usize,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub col: u64,
}

/// A segment after validation.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its unique name.
    pub name: String,
    /// Its parsed identity patterns.
    pub identities: Vec<IdentityPattern>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Where it was defined.
    pub at: Loc,
}

/// What a `from`/`to` selector resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `"*"`: any authenticated identity.
    Any,
    /// A segment, by id.
    Segment(u32),
    /// A label selector, by group id.
    Group(u32),
}

/// A rule after validation.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its unique name, reported as the deciding rule.
    pub name: String,
    /// Allow or deny.
    pub effect: Effect,
    /// A deny rule that only reports `would-deny`.
    pub dry_run: bool,
    /// Source selectors.
    pub from: Vec<Target>,
    /// Destination selectors.
    pub to: Vec<Target>,
    /// Methods it applies to; `None` is all.
    pub methods: Option<MethodSet>,
    /// Paths it applies to; `None` is all. Shared between rules that write the same pattern.
    pub paths: Option<Vec<Arc<PathPattern>>>,
    /// Where it was defined.
    pub at: Loc,
}

/// A label selector shared by every rule that writes the same labels.
#[derive(Debug, Clone)]
pub struct Group {
    /// The labels a segment must all carry.
    pub labels: BTreeMap<String, String>,
    /// The segments that carry them, ascending.
    pub members: Vec<u32>,
}

/// Rules filed under one destination key, by source key.
#[derive(Debug, Default)]
pub(super) struct DstBucket {
    /// (source key, rule indexes), sorted by source key.
    by_src: Box<[(u32, Box<[u32]>)]>,
}

impl DstBucket {
    /// The rules filed under `src`: buckets are small, so a scan beats hashing; large ones
    /// (e.g. under `"*"`) are binary-searched.
    pub(super) fn rules_for(&self, src: u32) -> Option<&[u32]> {
        let found = if self.by_src.len() <= 8 {
            self.by_src.iter().find(|(k, _)| *k == src)
        } else {
            let at = self.by_src.binary_search_by_key(&src, |(k, _)| *k).ok();
            at.map(|i| &self.by_src[i])
        };
        found.map(|(_, rules)| &**rules)
    }
}

/// An immutable, indexed policy; the only way to make one is [`compile`].
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(super) version: String,
    pub(super) files: Vec<String>,
    pub(super) segments: Vec<Segment>,
    pub(super) groups: Vec<Group>,
    pub(super) rules: Vec<Rule>,
    pub(super) revoked: Vec<IdentityPattern>,
    pub(super) test_count: usize,
    pub(super) identities: IdentityIndex,
    /// Segment id → its keys (itself, then its groups).
    pub(super) segment_keys: Vec<Box<[u32]>>,
    /// Key → rules filed under it as destination; the last key is `ANY`.
    pub(super) by_dst: Vec<Option<Box<DstBucket>>>,
    /// Key → whether some rule is filed under it as a source.
    pub(super) src_used: Vec<bool>,
    /// Classification tables built at compile time.
    pub(super) classifier: Classifier,
    /// Unique per compiled policy in this process; tags its classifications.
    pub(super) instance: u64,
}

impl CompiledPolicy {
    /// Hash of the canonical content (segments, rules, revoked), e.g. `sha256:1f2e…`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The files the policy was read from, in order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Segments, sorted by name.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Rules, sorted by name (the order that breaks ties between deciding rules).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Label selectors in use.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Revoked identity patterns.
    pub fn revoked(&self) -> &[IdentityPattern] {
        &self.revoked
    }

    /// How many `tests:` entries passed at compile time.
    pub fn test_count(&self) -> usize {
        self.test_count
    }

    /// `file:line:col` of a location.
    pub fn locate(&self, at: Loc) -> String {
        format!("{}:{}:{}", self.files[at.file], at.line, at.col)
    }

    /// The key standing for `"*"`.
    pub(super) fn any_key(&self) -> u32 {
        (self.segments.len() + self.groups.len()) as u32
    }

    /// The segments a target covers (all of them for `Any`).
    pub fn members(&self, target: Target) -> Vec<u32> {
        match target {
            Target::Any => (0..self.segments.len() as u32).collect(),
            Target::Segment(s) => vec![s],
            Target::Group(g) => self.groups[g as usize].members.clone(),
        }
    }
}

/// Validates, indexes and tests a policy.
///
/// # Errors
/// Every problem found, each at file:line:col; failing `tests:` make the policy invalid.
pub fn compile(source: &PolicySource) -> Result<CompiledPolicy, PolicyErrors> {
    let Parts {
        files,
        segments,
        groups,
        rules,
        revoked,
    } = validate(source)?;
    let version = version_of(&segments, &groups, &rules, &revoked);
    let policy = index(files, segments, groups, rules, revoked, version);
    let failures = run_tests(&policy, source);
    if !failures.is_empty() {
        return Err(PolicyErrors(failures));
    }
    Ok(CompiledPolicy {
        test_count: count_tests(source),
        ..policy
    })
}

fn count_tests(source: &PolicySource) -> usize {
    source.files.iter().map(|f| f.doc.tests.len()).sum()
}

/// Builds the trie and the rule index from validated parts.
fn index(
    files: Vec<String>,
    segments: Vec<Segment>,
    groups: Vec<Group>,
    rules: Vec<Rule>,
    revoked: Vec<IdentityPattern>,
    version: String,
) -> CompiledPolicy {
    let seg_count = segments.len() as u32;
    let mut identities = IdentityIndex::default();
    let mut segment_keys: Vec<Vec<u32>> = (0..seg_count).map(|s| vec![s]).collect();
    for (id, segment) in segments.iter().enumerate() {
        segment
            .identities
            .iter()
            .for_each(|p| identities.insert(p, id as u32));
    }
    for (g, group) in groups.iter().enumerate() {
        group
            .members
            .iter()
            .for_each(|&s| segment_keys[s as usize].push(seg_count + g as u32));
    }
    // Revoked patterns share the trie, so one walk classifies and checks revocation.
    revoked
        .iter()
        .enumerate()
        .for_each(|(i, p)| identities.insert(p, REVOKED | i as u32));
    let any = seg_count + groups.len() as u32;
    let key = |t: Target| match t {
        Target::Any => any,
        Target::Segment(s) => s,
        Target::Group(g) => seg_count + g,
    };
    // (destination key, source key, rule) for every pair a rule names, sorted so each
    // bucket is built once at its final size.
    let mut filed: Vec<(u32, u32, u32)> = Vec::with_capacity(rules.len() * 2);
    for (r, rule) in rules.iter().enumerate() {
        for &dst in &rule.to {
            filed.extend(rule.from.iter().map(|&src| (key(dst), key(src), r as u32)));
        }
    }
    filed.sort_unstable();
    filed.dedup();
    let mut src_used = vec![false; any as usize + 1];
    filed
        .iter()
        .for_each(|&(_, s, _)| src_used[s as usize] = true);
    let mut by_dst: Vec<Option<Box<DstBucket>>> = (0..=any).map(|_| None).collect();
    for for_dst in filed.chunk_by(|a, b| a.0 == b.0) {
        by_dst[for_dst[0].0 as usize] = Some(Box::new(bucket(for_dst)));
    }
    let mut policy = CompiledPolicy {
        version,
        files,
        segments,
        groups,
        rules,
        revoked,
        test_count: 0,
        identities,
        segment_keys: segment_keys
            .into_iter()
            .map(Vec::into_boxed_slice)
            .collect(),
        by_dst,
        src_used,
        classifier: Classifier::default(),
        instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
    };
    let named = policy.segments.iter().flat_map(|s| &s.identities);
    policy.classifier = build_classifier(&policy, named.chain(&policy.revoked));
    policy
}

/// One destination key's rules, by source key; `filed` is sorted and shares the dst key.
fn bucket(filed: &[(u32, u32, u32)]) -> DstBucket {
    let by_src = filed
        .chunk_by(|a, b| a.1 == b.1)
        .map(|for_src| (for_src[0].1, for_src.iter().map(|t| t.2).collect()))
        .collect();
    DstBucket { by_src }
}
