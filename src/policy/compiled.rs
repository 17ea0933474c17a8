//! The compiled policy's data (docs/policy-language.md): segments, rules, label groups, the rule index
//! by destination and source key, and the `Classifier` of identities. Built only by
//! `compile`; read by `decide`, `explain` and `analysis`, which never need the compile steps.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::classify::{Classification, Classifier};
use super::method::MethodSet;
use super::pattern::{IdentityPattern, PathPattern};
use super::source::Effect;
use crate::identity::SpiffeId;

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
    /// A deny rule whose match is a probe on its own (docs/probes.md#tripwires).
    pub tripwire: bool,
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
    /// Unix time (seconds) after which it no longer matches (`expires:`).
    pub expires: Option<i64>,
    /// Whether `expires` had passed when this policy was compiled: the rule is kept (for
    /// `explain`, the decision log's `rule-expired` and the lints) but matches nothing.
    pub expired: bool,
    /// Exception metadata, free text: who asked, the approving ticket, why.
    pub owner: Option<String>,
    /// The approving ticket.
    pub ticket: Option<String>,
    /// Why the rule exists.
    pub reason: Option<String>,
}

impl Rule {
    /// Whether the rule is a time-boxed exception (it has `expires:`).
    pub fn is_exception(&self) -> bool {
        self.expires.is_some()
    }
}

/// A `revoked:` entry after validation (docs/runbook.md).
#[derive(Debug, Clone)]
pub struct Revocation {
    /// What it covers, as written: an ID or pattern, `segment: NAME` or `labels: {k: v}`.
    pub scope: String,
    /// The identity patterns it revokes (a segment's or its label members' patterns).
    pub patterns: Vec<IdentityPattern>,
    /// Why (free text).
    pub reason: Option<String>,
    /// Unix time it began (a record).
    pub since: Option<i64>,
    /// Unix time it lifts itself.
    pub until: Option<i64>,
    /// Whether `until` had passed when this policy was compiled (the entry revokes nothing).
    pub lifted: bool,
    /// Whether `tests:` from the identities it revokes are suspended while it is in force.
    pub suspend_tests: bool,
    /// Where it was written.
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
    pub(super) by_src: Box<[(u32, Box<[u32]>)]>,
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

/// An immutable, indexed policy; the only way to make one is [`compile`](super::compile()).
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(super) version: String,
    pub(super) files: Vec<String>,
    pub(super) segments: Vec<Segment>,
    pub(super) groups: Vec<Group>,
    pub(super) rules: Vec<Rule>,
    pub(super) revoked: Vec<IdentityPattern>,
    /// Every `revoked:` entry, lifted ones included.
    pub(super) revocations: Vec<Revocation>,
    /// The unix time this state was compiled for.
    pub(super) now: i64,
    /// The next instant a rule expires or a revocation lifts, after `now`.
    pub(super) next_change: Option<i64>,
    pub(super) test_count: usize,
    /// Rules of the whole policy this one was sliced from (`super::slice`); its own count
    /// when it is not a slice.
    pub(super) fleet_rules: usize,
    /// `tests:` not run because a containment with `suspend_tests` revokes their source:
    /// (file:line:col of the test, the containment's scope).
    pub(super) suspended_tests: Vec<(String, String)>,
    /// Key → rules filed under it as destination; the last key is `ANY`.
    pub(super) by_dst: Vec<Option<Box<DstBucket>>>,
    /// The identity trie and keys that classify the parties of a request.
    pub(super) classifier: Classifier,
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

    /// Revoked identity patterns in force (every entry's patterns but lifted ones').
    pub fn revoked(&self) -> &[IdentityPattern] {
        &self.revoked
    }

    /// Every `revoked:` entry with its scope and containment record.
    pub fn revocations(&self) -> &[Revocation] {
        &self.revocations
    }

    /// The unix time (seconds) this state was compiled for: rules expired and entries lifted
    /// by then are out of force.
    pub fn compiled_for(&self) -> i64 {
        self.now
    }

    /// The next unix time (seconds) at which a rule expires or a revocation lifts: the
    /// sidecar publishes the successor state ([`super::compile::successor`]) then.
    pub fn next_change(&self) -> Option<i64> {
        self.next_change
    }

    /// How many rules the whole policy holds: [`Self::rules`] is the slice in force, this is
    /// the fleet it was cut from (the same count when the policy is not a slice).
    pub fn fleet_rules(&self) -> usize {
        self.fleet_rules
    }

    /// How many `tests:` entries passed at compile time.
    pub fn test_count(&self) -> usize {
        self.test_count
    }

    /// `tests:` suspended by a containment (`suspend_tests: true`): (file:line:col, scope).
    pub fn suspended_tests(&self) -> &[(String, String)] {
        &self.suspended_tests
    }

    /// `file:line:col` of a location.
    pub fn locate(&self, at: Loc) -> String {
        format!("{}:{}:{}", self.files[at.file], at.line, at.col)
    }

    /// The segments a target covers (all of them for `Any`).
    pub fn members(&self, target: Target) -> Vec<u32> {
        match target {
            Target::Any => (0..self.segments.len() as u32).collect(),
            Target::Segment(s) => vec![s],
            Target::Group(g) => self.groups[g as usize].members.clone(),
        }
    }

    /// The segment with this name.
    pub fn segment_id(&self, name: &str) -> Option<u32> {
        self.segments
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| i as u32)
    }

    /// Classifies `id` for [`Self::decide_classified`] (one hash lookup when the policy names
    /// it exactly, else one trie walk).
    pub fn classify(&self, id: &SpiffeId) -> Classification<'_> {
        self.classifier.classify(id)
    }
}
