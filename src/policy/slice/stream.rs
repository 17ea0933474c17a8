//! The whole policy checked and sliced as its texts are read, so that the parsed and the
//! validated rules of a large fleet never exist together (docs/performance.md, "Fleet-scale
//! policy": the peak of a whole-fleet reload is what the heap keeps).
//!
//! Two passes over each text on the fast YAML path: the first reads `segments:`, `revoked:`
//! and `tests:` (skipping `rules:`), which are validated as `validate.rs` does;
//! the second reads `rules:` one rule at a time, validates it against the whole segment table,
//! writes its canonical content for the version (`version.rs`) and keeps its document only
//! when the slice keeps it. Duplicate rule names show when the written rules are sorted.
//!
//! It only ever decides a policy valid: any error, and any text outside the fast YAML
//! subset, sends the texts down the whole path ([`PolicySource::from_texts`], [`Fleet::check`],
//! [`Fleet::compile`]), which reports exactly what it always reported, every error of every
//! file at file:line:col.

use std::fmt;

use rustc_hash::FxHashMap;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ClassSegment, Fleet, Kept, Scope, build_slice, classes};
use crate::policy::compile::{Built, Settled, settle};
use crate::policy::compiled::{CompiledPolicy, Group, Rule, Segment};
use crate::policy::error::PolicyErrors;
use crate::policy::fast_yaml;
use crate::policy::load::{MAX_FILE_BYTES, PolicySource, SourceFile};
use crate::policy::source::{
    NamedMap, PolicyDoc, RevokedDoc, RuleDoc, SegmentDoc, Spanned, TestDoc,
};
use crate::policy::validate::{GroupTable, Parts, Validator};
use crate::policy::version::{sync_group_texts, version_of_written, write_rule, written_name};

/// Policy file names and texts, in name order.
pub type Texts = [(String, String)];

impl Fleet {
    /// Checks the whole policy of `texts` as of `now`, as [`Fleet::check`] of their parse
    /// does, without holding its rules together.
    ///
    /// # Errors
    /// Every problem of every file, as [`PolicySource::from_texts`] and [`Fleet::check`]
    /// report them.
    pub fn check_texts(texts: &Texts, now: i64) -> Result<(), PolicyErrors> {
        if stream(texts, None, now).is_some() {
            return Ok(());
        }
        Fleet::check(&whole(texts)?, now).map(drop)
    }

    /// The slice for `scope` of the policy of `texts`, checked whole and cut as of `now`,
    /// not compiled yet: what [`Fleet::compile`] compiles, without holding the whole's rules
    /// together.
    ///
    /// # Errors
    /// As [`Self::check_texts`].
    pub fn cut_texts(texts: &Texts, scope: &Scope, now: i64) -> Result<CutSlice, PolicyErrors> {
        if let Some(streamed) = stream(texts, Some(scope), now) {
            return Ok(streamed);
        }
        let source = whole(texts)?;
        let fleet = Fleet::check(&source, now)?;
        Ok(CutSlice {
            source: fleet.plan(&source, scope).apply(source),
            fleet_rules: fleet.rules(),
            version: fleet.version,
            now,
        })
    }

    /// [`Self::cut_texts`], compiled: [`Fleet::compile`] of the texts' parse.
    ///
    /// # Errors
    /// As [`Self::cut_texts`], then [`CutSlice::compile`].
    pub fn compile_texts(
        texts: &Texts,
        scope: &Scope,
        now: i64,
    ) -> Result<CompiledPolicy, PolicyErrors> {
        Self::cut_texts(texts, scope, now)?.compile()
    }
}

/// A slice cut from a valid whole, with the whole's version and rule count, to compile.
pub struct CutSlice {
    source: PolicySource,
    version: String,
    fleet_rules: usize,
    now: i64,
}

impl CutSlice {
    /// Compiles the slice (its `tests:` run) as of the instant it was cut, as
    /// [`Fleet::compile`].
    ///
    /// # Errors
    /// A failing `tests:` entry the slice sees.
    pub fn compile(self) -> Result<CompiledPolicy, PolicyErrors> {
        self.build(Built::Loaded)
    }

    /// Without the `tests:`: the successor an expiry publishes, as [`Fleet::successor`].
    ///
    /// # Errors
    /// As [`Fleet::successor`].
    pub fn successor(self) -> Result<CompiledPolicy, PolicyErrors> {
        self.build(Built::Successor)
    }

    fn build(self, built: Built) -> Result<CompiledPolicy, PolicyErrors> {
        build_slice(
            self.source,
            self.now,
            built,
            &self.version,
            self.fleet_rules,
        )
    }
}

/// The texts parsed whole (the path that reports errors).
fn whole(texts: &Texts) -> Result<PolicySource, PolicyErrors> {
    PolicySource::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

/// The first pass's view of a file: everything but `rules:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadDoc {
    #[serde(default)]
    segments: NamedMap<SegmentDoc>,
    #[serde(default)]
    rules: IgnoredAny,
    #[serde(default)]
    revoked: Vec<Spanned<RevokedDoc>>,
    #[serde(default)]
    tests: Vec<Spanned<TestDoc>>,
}

/// The slice for `scope` (only a check without one) of valid `texts` as of `now`; `None`
/// when they have an error or are outside the fast YAML subset.
fn stream(texts: &Texts, scope: Option<&Scope>, now: i64) -> Option<CutSlice> {
    let head = heads(texts)?;
    let mut cx = Validator::new(&head);
    let segments = cx.segments();
    let names: FxHashMap<&str, u32> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i as u32))
        .collect();
    let revoked = cx.revoked(&segments, &names);
    if !cx.errors.is_empty() {
        return None;
    }
    let mut groups = GroupTable::new(&segments);
    let mut kept = scope.map(|scope| Kept::new(&segments, scope));
    let mut written = Written::default();
    let mut kept_rules: Vec<Vec<Spanned<RuleDoc>>> = Vec::with_capacity(texts.len());
    for (f, (_, text)) in texts.iter().enumerate() {
        let mut mine = Vec::new();
        let mut on_rule = |doc: Spanned<RuleDoc>| {
            let Some(mut rule) = cx.rule(f, &doc.value, &names, &mut groups) else {
                return false;
            };
            // As `settle` marks it.
            rule.expired = rule.expires.is_some_and(|t| t <= now);
            written.add(&rule, &segments, groups.groups());
            if let Some(kept) = kept.as_mut() {
                kept.sync(groups.groups());
                if kept.rule(groups.groups(), &rule) {
                    mine.push(doc);
                }
            }
            true
        };
        fast_yaml::parse_seed(text, DocSeed(&mut on_rule))?;
        kept_rules.push(mine);
    }
    drop(cx);
    let groups = groups.into_groups();
    if !written.sort() {
        return None;
    }
    let (Some(kept), Some(scope)) = (kept, scope) else {
        return Some(CutSlice::checked(written.count, now));
    };
    let parts = Parts {
        files: Vec::new(),
        segments,
        groups,
        rules: Vec::new(),
        revoked,
    };
    let sliced = Sliced {
        head,
        rules: kept_rules,
        kept,
    };
    Some(sliced.finish(parts, &written, scope, now))
}

/// The first pass: every file's `segments:`, `revoked:` and `tests:`; `None` when one is
/// outside the fast YAML subset or not a policy document.
fn heads(texts: &Texts) -> Option<PolicySource> {
    let mut head = PolicySource::default();
    for (name, text) in texts {
        if text.len() as u64 > MAX_FILE_BYTES {
            return None;
        }
        let doc = fast_yaml::parse::<Option<HeadDoc>>(text)?.unwrap_or_default();
        let IgnoredAny = doc.rules;
        let doc = PolicyDoc {
            segments: doc.segments,
            rules: Vec::new(),
            revoked: doc.revoked,
            tests: doc.tests,
        };
        let name = name.clone();
        head.files.push(SourceFile { name, doc });
    }
    Some(head)
}

/// What the passes kept for a slice: the first pass's documents, each file's kept rules,
/// and the kept names.
struct Sliced<'p> {
    head: PolicySource,
    rules: Vec<Vec<Spanned<RuleDoc>>>,
    kept: Kept<'p>,
}

impl Sliced<'_> {
    /// The version of the whole (`written`, sorted) and the slice's files.
    fn finish(mut self, mut parts: Parts, written: &Written, scope: &Scope, now: i64) -> CutSlice {
        let Settled { in_force, .. } = settle(&mut parts, now);
        let version = version_of_written(
            &parts.segments,
            written.count,
            written.in_order(),
            &in_force,
        );
        // Any file's `revoked:` may name a segment of any file.
        for entry in self.head.files.iter().flat_map(|file| &file.doc.revoked) {
            self.kept.need_for(&parts.segments, &entry.value);
        }
        // Before the cut: a class of one segment keeps that segment as written.
        let classes = classes::of(&parts, &mut self.kept.segments, &self.kept.full);
        let source = cut(self.head, self.rules, &self.kept, &parts, scope, &classes);
        CutSlice {
            source,
            version,
            fleet_rules: written.count,
            now,
        }
    }
}

impl CutSlice {
    /// A check's answer: valid, nothing sliced.
    fn checked(fleet_rules: usize, now: i64) -> Self {
        Self {
            source: PolicySource::default(),
            version: String::new(),
            fleet_rules,
            now,
        }
    }
}

/// The slice's files: each file's kept segments as written, its kept rules, every
/// `revoked:` entry, the `tests:` the scope sees; the classes appended to the first file's
/// segments (as [`super::SlicePlan::apply`] cuts it).
fn cut(
    head: PolicySource,
    rules: Vec<Vec<Spanned<RuleDoc>>>,
    kept: &Kept,
    parts: &Parts,
    scope: &Scope,
    classes: &[ClassSegment],
) -> PolicySource {
    let mut files: Vec<SourceFile> = head
        .files
        .into_iter()
        .zip(rules)
        .map(|(file, rules)| {
            let doc = file.doc;
            let mut segments = doc.segments;
            segments
                .0
                .retain(|(name, _)| kept.keeps_segment(&parts.segments, &name.value));
            let mut tests = doc.tests;
            tests.retain(|t| scope.sees(&t.value));
            let doc = PolicyDoc {
                segments,
                rules,
                revoked: doc.revoked,
                tests,
            };
            SourceFile {
                name: file.name,
                doc,
            }
        })
        .collect();
    if let Some(first) = files.first_mut() {
        let segments = &mut first.doc.segments.0;
        segments.extend(classes.iter().map(ClassSegment::doc));
    }
    PolicySource { files }
}

/// The canonical content of every valid rule, for the version: back to back in chunks of
/// [`CHUNK`] bytes, so that no allocation grows with the policy (glibc's malloc serves a
/// large one with its own mapping, and freeing it raises the size under which later ones
/// come from, and stay in, the heap).
#[derive(Default)]
struct Written {
    chunks: Vec<Vec<u8>>,
    /// Each rule's content: (chunk, start, end).
    spans: Vec<(u32, u32, u32)>,
    scratch: Vec<u8>,
    count: usize,
    group_texts: Vec<String>,
}

/// The size of a [`Written`] chunk: under glibc's smallest threshold for a mapping of its
/// own (128 KiB).
const CHUNK: usize = 64 * 1024;

impl Written {
    fn add(&mut self, rule: &Rule, segments: &[Segment], groups: &[Group]) {
        sync_group_texts(groups, &mut self.group_texts);
        self.scratch.clear();
        write_rule(&mut self.scratch, rule, segments, &self.group_texts);
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= self.scratch.len());
        if !fits {
            self.chunks
                .push(Vec::with_capacity(CHUNK.max(self.scratch.len())));
        }
        let index = self.chunks.len() - 1;
        if let Some(chunk) = self.chunks.last_mut() {
            let start = chunk.len();
            chunk.extend_from_slice(&self.scratch);
            let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let span = (narrow(index), narrow(start), narrow(chunk.len()));
            self.spans.push(span);
        }
        self.count += 1;
    }

    /// One rule's content.
    fn bytes(&self, (chunk, start, end): (u32, u32, u32)) -> &[u8] {
        self.chunks
            .get(chunk as usize)
            .and_then(|c| c.get(start as usize..end as usize))
            .unwrap_or_default()
    }

    /// Sorts the rules by name; `false` when two share a name (the whole path reports
    /// where).
    fn sort(&mut self) -> bool {
        let mut spans = std::mem::take(&mut self.spans);
        spans.sort_unstable_by(|a, b| {
            written_name(self.bytes(*a)).cmp(written_name(self.bytes(*b)))
        });
        let unique = spans
            .windows(2)
            .all(|w| written_name(self.bytes(w[0])) != written_name(self.bytes(w[1])));
        self.spans = spans;
        unique
    }

    /// Each rule's content, in the order of [`Self::spans`].
    fn in_order(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|&span| self.bytes(span))
    }
}

/// The second pass over one file: `rules:` entry by entry to a handler that answers whether
/// the rule is valid (an invalid one ends the pass); the other keys skipped.
struct DocSeed<'h, F>(&'h mut F);

impl<'de, F: FnMut(Spanned<RuleDoc>) -> bool> DeserializeSeed<'de> for DocSeed<'_, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F: FnMut(Spanned<RuleDoc>) -> bool> Visitor<'de> for DocSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a policy document")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut rules_seen = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "rules" if !rules_seen => {
                    rules_seen = true;
                    map.next_value_seed(RulesSeed(&mut *self.0))?;
                }
                // Read by the first pass, which refused unknown and repeated keys.
                "segments" | "revoked" | "tests" => drop(map.next_value::<IgnoredAny>()?),
                _ => return Err(A::Error::custom("unexpected key")),
            }
        }
        Ok(())
    }
}

/// `rules:`, one entry at a time.
struct RulesSeed<'h, F>(&'h mut F);

impl<'de, F: FnMut(Spanned<RuleDoc>) -> bool> DeserializeSeed<'de> for RulesSeed<'_, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Spanned<RuleDoc>) -> bool> Visitor<'de> for RulesSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of rules")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(rule) = seq.next_element::<Spanned<RuleDoc>>()? {
            if !(self.0)(rule) {
                return Err(A::Error::custom("an invalid rule"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
