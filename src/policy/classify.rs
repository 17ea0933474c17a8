//! `Classifier` → `Classification`: what the policy knows about one identity — revoked or not,
//! and the index keys it is filed under as a source and as a destination (docs/policy-language.md, §7).
//! Owns the identity trie and the keys it needs; knows nothing of `CompiledPolicy`.
//!
//! No allocation per request in the common cases: exactly named identities are classified at
//! compile time (one hash lookup); an identity in one segment borrows that segment's keys.

use std::borrow::Cow;

use rustc_hash::FxHashMap;

use super::pattern::IdentityPattern;
use super::trie::IdentityIndex;
use crate::identity::SpiffeId;

/// Marks a trie value as a `revoked` entry rather than a segment id.
pub(super) const REVOKED: u32 = 1 << 31;

/// The index keys an identity is filed under, filtered to keys some rule uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySets {
    /// Keys with rules filed under them as a source (`ANY` included when used).
    pub(super) src: Box<[u32]>,
    /// Keys with rules filed under them as a destination (`ANY` included when used).
    pub(super) dst: Box<[u32]>,
}

/// An identity's standing in one policy version; valid only with the policy that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification<'p> {
    /// The instance number of the [`Classifier`] that made it: keys mean nothing elsewhere.
    pub(super) policy: u64,
    /// Step 1 of the decision: the identity matches `revoked`.
    pub(super) revoked: bool,
    /// Where its rules are filed.
    pub(super) keys: Cow<'p, KeySets>,
}

impl Classification<'_> {
    /// Whether the identity is revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked
    }

    /// A classification that no longer borrows from the policy (to keep per connection).
    pub fn into_owned(self) -> Classification<'static> {
        Classification {
            policy: self.policy,
            revoked: self.revoked,
            keys: Cow::Owned(self.keys.into_owned()),
        }
    }
}

/// The index keys as the compile step laid them out: segment ids, then group ids, then `ANY`.
#[derive(Debug)]
pub(super) struct Keys {
    /// Segment id → its keys (itself, then its groups).
    pub(super) of_segment: Vec<Box<[u32]>>,
    /// The key standing for `"*"`.
    pub(super) any: u32,
    /// Key → whether some rule is filed under it as a source.
    pub(super) src_used: Vec<bool>,
    /// Key → whether some rule is filed under it as a destination.
    pub(super) dst_used: Vec<bool>,
}

/// Where the keys of an exactly named identity are: those of its one segment, of no
/// segment, or its own entry in [`Classifier::merged`].
#[derive(Debug, Clone, Copy)]
enum ExactKeys {
    Segment(u32),
    Unsegmented,
    Merged(u32),
}

/// Exactly named identity → revoked flag and where its keys are.
type ExactTable = FxHashMap<Box<str>, (bool, ExactKeys)>;

/// Classifies identities for one compiled policy, from tables built once at compile time.
#[derive(Debug)]
pub(super) struct Classifier {
    /// Segment patterns valued by segment id, revoked ones by `REVOKED | index`.
    identities: IdentityIndex,
    keys: Keys,
    /// Unique per compiled policy in this process; tags its classifications.
    instance: u64,
    /// Identities named exactly by some pattern: revoked flag and where their keys are.
    exact: ExactTable,
    /// The keys of exactly named identities in several segments, by [`ExactKeys::Merged`].
    merged: Vec<KeySets>,
    /// Segment id → the keys of an identity in that segment only.
    segment: Vec<KeySets>,
    /// The keys of an identity in no segment (only `"*"` rules apply).
    unsegmented: KeySets,
}

impl Classifier {
    /// Builds the tables; `patterns` are every pattern in `identities`, for the exact table.
    pub(super) fn new<'p>(
        identities: IdentityIndex,
        keys: Keys,
        instance: u64,
        patterns: impl Iterator<Item = &'p IdentityPattern>,
    ) -> Self {
        let mut classifier = Self {
            identities,
            keys,
            instance,
            exact: FxHashMap::default(),
            merged: Vec::new(),
            segment: Vec::new(),
            unsegmented: KeySets::default(),
        };
        classifier.segment = classifier
            .keys
            .of_segment
            .iter()
            .map(|k| classifier.key_sets(k.to_vec()))
            .collect();
        classifier.unsegmented = classifier.key_sets(Vec::new());
        let (exact, merged) = classifier.exact_table(patterns);
        classifier.exact = exact;
        classifier.merged = merged;
        classifier
    }

    /// Classifies `id` (see the module docs for the cost of each case).
    pub(super) fn classify(&self, id: &SpiffeId) -> Classification<'_> {
        if let Some(&(revoked, at)) = self.exact.get(id.as_str()) {
            let keys = match at {
                ExactKeys::Segment(s) => &self.segment[s as usize],
                ExactKeys::Unsegmented => &self.unsegmented,
                ExactKeys::Merged(m) => &self.merged[m as usize],
            };
            return Classification {
                policy: self.instance,
                revoked,
                keys: Cow::Borrowed(keys),
            };
        }
        let (mut revoked, mut first, mut several) = (false, None, false);
        self.identities.lookup(id, &mut |v| match first {
            _ if v & REVOKED != 0 => revoked = true,
            None => first = Some(v),
            Some(f) => several |= f != v,
        });
        let keys = match (first, several) {
            (None, _) => Cow::Borrowed(&self.unsegmented),
            (Some(s), false) => Cow::Borrowed(&self.segment[s as usize]),
            (Some(_), true) => Cow::Owned(self.merged_keys(id)),
        };
        Classification {
            policy: self.instance,
            revoked,
            keys,
        }
    }

    /// Whether this classifier made `classification` (its keys are then valid here).
    pub(super) fn made(&self, classification: &Classification<'_>) -> bool {
        classification.policy == self.instance
    }

    /// Ids of the segments `id` belongs to, sorted (revocation aside).
    pub(super) fn segment_ids(&self, id: &SpiffeId) -> Vec<u32> {
        let mut ids = Vec::new();
        self.each_segment(id, |s| ids.push(s));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The trie of segment (and `REVOKED`-tagged) patterns, for reach's class walk.
    pub(super) fn index(&self) -> &IdentityIndex {
        &self.identities
    }

    /// The keys of an identity in exactly these segments (ids from the trie walk).
    pub(super) fn keys_of(&self, segments: &[u32]) -> KeySets {
        let keys = segments
            .iter()
            .flat_map(|s| self.keys.of_segment[*s as usize].iter().copied())
            .collect();
        self.key_sets(keys)
    }

    /// Ids of the segments with a pattern overlapping `pattern`, sorted (revocation aside).
    pub(super) fn segments_overlapping(&self, pattern: &IdentityPattern) -> Vec<u32> {
        let mut ids = Vec::new();
        self.identities.overlapping(pattern, &mut |v| {
            if v & REVOKED == 0 {
                ids.push(v);
            }
        });
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Calls `found` with the id of every segment `id` belongs to (an id may repeat).
    fn each_segment(&self, id: &SpiffeId, mut found: impl FnMut(u32)) {
        self.identities.lookup(id, &mut |v| {
            if v & REVOKED == 0 {
                found(v);
            }
        });
    }

    /// Keys of every segment `id` belongs to, merged, plus `ANY`.
    fn merged_keys(&self, id: &SpiffeId) -> KeySets {
        let mut segments = Vec::with_capacity(4);
        self.each_segment(id, |s| segments.push(s));
        self.keys_of(&segments)
    }

    /// Sorts, de-duplicates, adds `ANY`, and keeps the keys some rule is filed under.
    fn key_sets(&self, mut keys: Vec<u32>) -> KeySets {
        keys.sort_unstable();
        keys.dedup();
        keys.push(self.keys.any);
        let used = |flags: &[bool]| {
            keys.iter()
                .filter(|k| flags[**k as usize])
                .copied()
                .collect()
        };
        KeySets {
            src: used(&self.keys.src_used),
            dst: used(&self.keys.dst_used),
        }
    }

    /// The revoked flag and keys of every identity a pattern names exactly, and the merged
    /// keys of those in several segments. An identity in one segment (or none) shares that
    /// segment's keys: no table of its own, whatever the number of identities.
    ///
    /// The pattern's own trie walk ([`IdentityIndex::overlapping`], for an exact pattern the
    /// same values as [`IdentityIndex::lookup`] of its ID) finds its segments; its text is
    /// the key [`Self::classify`] looks the ID up by. (A text no SPIFFE ID can have is never
    /// looked up: a pattern is validated as an ID when parsed.)
    fn exact_table<'p>(
        &self,
        patterns: impl Iterator<Item = &'p IdentityPattern>,
    ) -> (ExactTable, Vec<KeySets>) {
        let mut exact = FxHashMap::default();
        exact.reserve(patterns.size_hint().0);
        let mut merged = Vec::new();
        let mut text = String::with_capacity(128);
        let mut segments = Vec::with_capacity(4);
        for pattern in patterns.filter(|p| p.is_exact()) {
            text.clear();
            pattern.write_to(&mut text);
            if exact.contains_key(text.as_str()) {
                continue;
            }
            let mut revoked = false;
            segments.clear();
            self.identities.overlapping(pattern, &mut |v| {
                if v & REVOKED == 0 {
                    segments.push(v);
                } else {
                    revoked = true;
                }
            });
            segments.sort_unstable();
            segments.dedup();
            let at = match segments.as_slice() {
                [] => ExactKeys::Unsegmented,
                [s] => ExactKeys::Segment(*s),
                several => {
                    merged.push(self.keys_of(several));
                    ExactKeys::Merged(merged.len() as u32 - 1)
                }
            };
            exact.insert(text.as_str().into(), (revoked, at));
        }
        exact.shrink_to_fit();
        (exact, merged)
    }
}
