//! Slices (docs/fleet.md "Slices"): the part of a policy that the decisions of some
//! identities can use. A sidecar decides only requests whose destination is its own ID
//! (inbound) or whose source is (outbound, L4 included), so it compiles only:
//! - the rules whose `to` or `from` can match a member of the [`Scope`] (a segment holding
//!   it, a label selector of a group holding such a segment, `"*"`); deny, `dry_run` and
//!   expired rules alike — an expired allow still names `rule-expired`;
//! - as written: every segment those rules name, every segment that may hold a member and
//!   that a label selector of theirs selects, and the segments `revoked:` scopes name;
//! - compactly ([`ClassSegment`]): the other segments a label selector selects, present only
//!   so that a peer is classified as the whole policy classifies it — one synthesized segment
//!   per distinct set of the labels the selectors need, listing their identity patterns;
//! - every `revoked:` entry (an inbound decision sees any peer as its source);
//! - the `tests:` whose request a member is a party of.
//!
//! A label selector needs every peer it selects only on a side of a rule facing a peer: the
//! `from` of a rule whose `to` can match a member (an inbound request from any peer), the
//! `to` of a rule whose `from` can (outbound to any peer). On the other side it only ever
//! classifies a member, whose segments are kept as written.
//!
//! A request a member is a party of is matched by exactly the rules of the whole policy that
//! match it, and rules keep their names, so the first by name decides as before. The slice
//! is a [`PolicySource`] like any other: it compiles, and [`SlicePlan`] names what it kept by
//! index into the source's files, in file order, plus the synthesized segments, for a
//! writer of slice folders.
//!
//! Not on the request path: a (re)load cuts the slice, then compiles it.

use rustc_hash::FxHashSet;

pub use self::classes::ClassSegment;
pub use self::stream::{CutSlice, Texts};
use super::compile::{Built, Settled, compile_parts, settle};
use super::compiled::{CompiledPolicy, Group, Rule, Segment, Target};
use super::error::PolicyErrors;
use super::load::{PolicySource, SourceFile};
use super::pattern::IdentityPattern;
use super::source::{PolicyDoc, RevokedDoc, RevokedScopeDoc, TestDoc};
use super::trie::IdentityIndex;
use super::validate::{Parts, validate};
use crate::identity::SpiffeId;

/// Whose decisions a slice keeps: the union of its members' slices.
///
/// A member is one SPIFFE ID (a sidecar's own) or an ID pattern; a segment or a label
/// selector stands for the patterns of the segments it names.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    members: Vec<Member>,
}

#[derive(Debug, Clone)]
enum Member {
    Identity(SpiffeId),
    Pattern(IdentityPattern),
}

impl Scope {
    /// The slice of one identity: what its sidecar decides.
    pub fn identity(id: SpiffeId) -> Self {
        Self {
            members: vec![Member::Identity(id)],
        }
    }

    /// The slice of every identity `pattern` matches.
    pub fn pattern(pattern: IdentityPattern) -> Self {
        Self {
            members: vec![Member::Pattern(pattern)],
        }
    }

    /// The union of two scopes.
    #[must_use]
    pub fn and(mut self, other: Self) -> Self {
        self.members.extend(other.members);
        self
    }

    /// The members in a trie, so that whether some member may be an identity a pattern
    /// matches is one walk, not one comparison per member (a namespace has hundreds).
    fn index(&self) -> Option<IdentityIndex> {
        let mut index = IdentityIndex::default();
        for member in &self.members {
            match member {
                Member::Identity(id) => index.insert(&IdentityPattern::parse(id.as_str()).ok()?, 0),
                Member::Pattern(p) => index.insert(p, 0),
            }
        }
        Some(index)
    }

    /// Whether some member may be an identity `pattern` matches (`index` is [`Self::index`]
    /// when it could be built: an exact pattern overlaps `pattern` when `pattern` matches it).
    fn may_match(&self, index: Option<&IdentityIndex>, pattern: &IdentityPattern) -> bool {
        if let Some(index) = index {
            let mut any = false;
            index.overlapping(pattern, &mut |_| any = true);
            return any;
        }
        self.members.iter().any(|m| match m {
            Member::Identity(id) => pattern.matches(id),
            Member::Pattern(p) => p.overlaps(pattern),
        })
    }

    /// Whether some member is the identity written `text` (true when `text` is no SPIFFE
    /// ID: the slice keeps what it cannot judge, so its compile reports the error).
    fn covers(&self, text: &str) -> bool {
        let Ok(id) = SpiffeId::parse(text) else {
            return true;
        };
        self.members.iter().any(|m| match m {
            Member::Identity(own) => *own == id,
            Member::Pattern(p) => p.matches(&id),
        })
    }

    /// Whether the slice sees the request of a `tests:` entry.
    fn sees(&self, test: &TestDoc) -> bool {
        self.covers(&test.from.value) || self.covers(&test.to.value)
    }
}

/// The whole policy, validated as of one instant: what every slice of it is cut from. It
/// refuses what compiling the whole would refuse (every error at file:line:col), but runs
/// no `tests:` (each slice runs those it sees) and builds no index.
pub struct Fleet {
    parts: Parts,
    now: i64,
    version: String,
}

impl Fleet {
    /// Validates `source` as of unix time `now`.
    ///
    /// # Errors
    /// Every problem of the whole policy, as `compile` reports it (its `tests:` aside).
    pub fn check(source: &PolicySource, now: i64) -> Result<Self, PolicyErrors> {
        let mut parts = validate(source)?;
        let Settled { version, .. } = settle(&mut parts, now);
        Ok(Self {
            parts,
            now,
            version,
        })
    }

    /// The same fleet as of `now` (a start-up that waited for its identity).
    #[must_use]
    pub fn at(mut self, now: i64) -> Self {
        self.version = settle(&mut self.parts, now).version;
        self.now = now;
        self
    }

    /// The version of the whole policy: what a slice of it reports as its own, so every
    /// sidecar of a fleet names the policy it was given (docs/operations.md `/policy`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many rules the whole policy holds.
    pub fn rules(&self) -> usize {
        self.parts.rules.len()
    }

    /// What the slice for `scope` keeps of `source` (the source this fleet was checked from).
    pub fn plan(&self, source: &PolicySource, scope: &Scope) -> SlicePlan {
        let mut kept = Kept::of(&self.parts, scope);
        // Any file's `revoked:` may name a segment of any file.
        source
            .files
            .iter()
            .flat_map(|file| &file.doc.revoked)
            .for_each(|entry| kept.need_for(&self.parts.segments, &entry.value));
        // Before the files: a class of one segment keeps that segment as written.
        let classes = classes::of(&self.parts, &mut kept.segments, &kept.full);
        let files = source
            .files
            .iter()
            .map(|file| kept.file(&self.parts, &file.doc, scope))
            .collect();
        SlicePlan {
            files,
            classes,
            fleet_rules: self.rules(),
        }
    }

    /// Cuts the slice for `scope` and compiles it (its visible `tests:` run), reporting the
    /// whole policy's version and rule count.
    ///
    /// # Errors
    /// What compiling the slice finds (a failing `tests:` entry it sees).
    pub fn compile(
        &self,
        source: PolicySource,
        scope: &Scope,
    ) -> Result<CompiledPolicy, PolicyErrors> {
        let slice = self.plan(&source, scope).apply(source);
        build_slice(slice, self.now, Built::Loaded, &self.version, self.rules())
    }

    /// [`Self::compile`] without the `tests:`: the successor state an expiry publishes
    /// ([`super::successor`]).
    ///
    /// # Errors
    /// As [`super::successor`].
    pub fn successor(
        &self,
        source: PolicySource,
        scope: &Scope,
    ) -> Result<CompiledPolicy, PolicyErrors> {
        let slice = self.plan(&source, scope).apply(source);
        build_slice(
            slice,
            self.now,
            Built::Successor,
            &self.version,
            self.rules(),
        )
    }
}

/// Validates `slice` and builds it as of `now`, its parsed items dropped before the indexes
/// are built (only its `tests:` are read after validation), reporting the whole policy's
/// `version` and `fleet_rules`: the one way a slice is compiled, cut from a parsed whole
/// ([`Fleet`]) or from texts as they are read ([`CutSlice`]).
fn build_slice(
    mut slice: PolicySource,
    now: i64,
    built: Built,
    version: &str,
    fleet_rules: usize,
) -> Result<CompiledPolicy, PolicyErrors> {
    let parts = validate(&slice)?;
    keep_only_tests(&mut slice);
    let policy = compile_parts(parts, &slice, now, built)?;
    Ok(CompiledPolicy {
        version: version.to_owned(),
        fleet_rules,
        ..policy
    })
}

/// Drops every parsed item of `source` but its `tests:` (and the file names).
fn keep_only_tests(source: &mut PolicySource) {
    for file in &mut source.files {
        let tests = std::mem::take(&mut file.doc.tests);
        file.doc = PolicyDoc {
            tests,
            ..PolicyDoc::default()
        };
    }
}

/// What a slice keeps of each file of its source, by index into that file's lists, in
/// file order: applying it to the same source always gives the same slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePlan {
    /// One entry per source file, in the source's order.
    pub files: Vec<FileSlice>,
    /// The synthesized segments that classify peers compactly, by name.
    pub classes: Vec<ClassSegment>,
    /// Rules of the whole policy.
    pub fleet_rules: usize,
}

/// The kept items of one file: indexes into its `segments:`, `rules:`, `revoked:`, `tests:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSlice {
    /// Kept `segments:` entries.
    pub segments: Vec<usize>,
    /// Kept `rules:` entries.
    pub rules: Vec<usize>,
    /// Kept `revoked:` entries.
    pub revoked: Vec<usize>,
    /// Kept `tests:` entries.
    pub tests: Vec<usize>,
}

impl SlicePlan {
    /// Whether applying it to `source` (the source planned from) gives `source` itself:
    /// every item of every file kept, no segment synthesized (the slice of a slice for the
    /// same scope; its tests say so).
    #[cfg(test)]
    pub(crate) fn keeps_all(&self, source: &PolicySource) -> bool {
        self.classes.is_empty()
            && self.files.len() == source.files.len()
            && self.files.iter().zip(&source.files).all(|(kept, file)| {
                // Kept indexes are ascending and distinct: as many as items is all of them.
                kept.segments.len() == file.doc.segments.0.len()
                    && kept.rules.len() == file.doc.rules.len()
                    && kept.revoked.len() == file.doc.revoked.len()
                    && kept.tests.len() == file.doc.tests.len()
            })
    }

    /// Rules the slice keeps.
    pub fn rules(&self) -> usize {
        self.files.iter().map(|f| f.rules.len()).sum()
    }

    /// The slice: `source` (the one planned from) with only the kept items, files and their
    /// names as they were (an emptied file stays, empty), and the synthesized segments
    /// added to the first file.
    pub fn apply(&self, source: PolicySource) -> PolicySource {
        let mut files: Vec<SourceFile> = source
            .files
            .into_iter()
            .zip(&self.files)
            .map(|(file, kept)| SourceFile {
                name: file.name,
                doc: kept.apply(file.doc),
            })
            .collect();
        if let Some(first) = files.first_mut() {
            let segments = &mut first.doc.segments.0;
            segments.extend(self.classes.iter().map(ClassSegment::doc));
        }
        PolicySource { files }
    }
}

impl FileSlice {
    fn apply(&self, doc: PolicyDoc) -> PolicyDoc {
        let mut out = PolicyDoc::default();
        out.segments.0 = pick(doc.segments.0, &self.segments);
        out.rules = pick(doc.rules, &self.rules);
        out.revoked = pick(doc.revoked, &self.revoked);
        out.tests = pick(doc.tests, &self.tests);
        out
    }
}

/// The items of `items` at the ascending indexes `kept`.
fn pick<T>(items: Vec<T>, kept: &[usize]) -> Vec<T> {
    let mut kept = kept.iter().peekable();
    let mut out = Vec::with_capacity(kept.len());
    for (i, item) in items.into_iter().enumerate() {
        if kept.next_if_eq(&&i).is_some() {
            out.push(item);
        }
    }
    out
}

/// The names a slice keeps, decided on the validated whole.
struct Kept<'p> {
    rules: FxHashSet<&'p str>,
    /// Segment id (in the validated, name-sorted order) → kept as written.
    segments: Vec<bool>,
    /// Group id → a kept rule uses it on a side facing any peer: every segment it selects
    /// classifies (as written, or in a [`ClassSegment`]).
    full: Vec<bool>,
    /// Segment id → it may hold a member of the scope.
    holds: Vec<bool>,
    /// Group id → one of its segments may hold a member.
    group_holds: Vec<bool>,
}

impl<'p> Kept<'p> {
    fn of(parts: &'p Parts, scope: &Scope) -> Self {
        let mut kept = Self::new(&parts.segments, scope);
        kept.sync(&parts.groups);
        for rule in &parts.rules {
            if kept.rule(&parts.groups, rule) {
                kept.rules.insert(&rule.name);
            }
        }
        kept
    }

    /// Nothing kept yet, for the validated `segments` (and no group yet: [`Self::sync`]).
    fn new(segments: &[Segment], scope: &Scope) -> Self {
        let index = scope.index();
        let holds: Vec<bool> = segments
            .iter()
            .map(|s| {
                s.identities
                    .iter()
                    .any(|p| scope.may_match(index.as_ref(), p))
            })
            .collect();
        Self {
            rules: FxHashSet::default(),
            segments: vec![false; segments.len()],
            full: Vec::new(),
            holds,
            group_holds: Vec::new(),
        }
    }

    /// Takes in the groups interned since the last call (ids are indexes into `groups`).
    fn sync(&mut self, groups: &[Group]) {
        for group in groups.iter().skip(self.group_holds.len()) {
            let holds = group.members.iter().any(|&s| self.holds[s as usize]);
            self.group_holds.push(holds);
            self.full.push(false);
        }
    }

    /// Whether the slice keeps `rule` (its groups taken in by [`Self::sync`]); if it does,
    /// keeps what its selectors need to classify as before.
    fn rule(&mut self, groups: &[Group], rule: &Rule) -> bool {
        let can_match = |t: &Target| match *t {
            Target::Any => true,
            Target::Segment(s) => self.holds[s as usize],
            Target::Group(g) => self.group_holds[g as usize],
        };
        let inbound = rule.to.iter().any(can_match);
        let outbound = rule.from.iter().any(can_match);
        if inbound || outbound {
            // `from` classifies any peer when an inbound request can match; else only
            // a member (the source of an outbound one). Likewise `to`.
            for t in &rule.from {
                self.need(groups, *t, inbound);
            }
            for t in &rule.to {
                self.need(groups, *t, outbound);
            }
        }
        inbound || outbound
    }

    /// Keeps what `target` needs to classify as before: any identity when `any_peer`, else
    /// only a member (the segments that may hold one, as written).
    fn need(&mut self, groups: &[Group], target: Target, any_peer: bool) {
        match target {
            Target::Any => {}
            Target::Segment(s) => self.segments[s as usize] = true,
            Target::Group(g) => {
                self.full[g as usize] |= any_peer;
                for &s in &groups[g as usize].members {
                    self.segments[s as usize] |= self.holds[s as usize];
                }
            }
        }
    }

    /// Keeps the segments a `revoked:` entry's scope names (its patterns are theirs).
    fn need_for(&mut self, segments: &[Segment], entry: &RevokedDoc) {
        let RevokedDoc::Entry(entry) = entry else {
            return;
        };
        match entry.scope() {
            Ok(RevokedScopeDoc::Segment(name)) => {
                if let Some(s) = segment_id(segments, &name.value) {
                    self.segments[s] = true;
                }
            }
            Ok(RevokedScopeDoc::Labels(labels)) => {
                for (s, segment) in segments.iter().enumerate() {
                    let map = &labels.value.0;
                    if map.iter().all(|(k, v)| segment.labels.get(k) == Some(v)) {
                        self.segments[s] = true;
                    }
                }
            }
            Ok(RevokedScopeDoc::Identity(_)) | Err(_) => {}
        }
    }

    /// Whether the slice keeps the segment written `name` as written (one the validated
    /// `segments` do not know is kept: its compile reports it).
    fn keeps_segment(&self, segments: &[Segment], name: &str) -> bool {
        segment_id(segments, name).is_none_or(|s| self.segments[s])
    }

    /// What the slice keeps of one file.
    fn file(&self, parts: &Parts, doc: &PolicyDoc, scope: &Scope) -> FileSlice {
        let kept = self;
        FileSlice {
            segments: indexes(doc.segments.0.iter(), |(name, _)| {
                kept.keeps_segment(&parts.segments, &name.value)
            }),
            rules: indexes(doc.rules.iter(), |r| {
                kept.rules.contains(r.value.name.value.as_str())
            }),
            revoked: (0..doc.revoked.len()).collect(),
            tests: indexes(doc.tests.iter(), |t| scope.sees(&t.value)),
        }
    }
}

/// The id of the segment named `name` in the validated (name-sorted) segments.
fn segment_id(segments: &[Segment], name: &str) -> Option<usize> {
    segments
        .binary_search_by(|s| s.name.as_str().cmp(name))
        .ok()
}

/// Indexes of the items `keep` accepts.
fn indexes<T>(items: impl Iterator<Item = T>, keep: impl Fn(T) -> bool) -> Vec<usize> {
    items
        .enumerate()
        .filter_map(|(i, item)| keep(item).then_some(i))
        .collect()
}

mod classes;
mod stream;
#[cfg(test)]
mod tests;
