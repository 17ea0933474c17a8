//! `Classifier` → `Classification`: what the policy knows about one identity — revoked or not,
//! and the index keys it is filed under as a source and as a destination (docs/policy-language.md, §7).
//! Owns the identity trie and the keys it needs; knows nothing of `CompiledPolicy`.
//!
//! No allocation per request in the common cases: exactly named identities are classified at
//! compile time (the answer marked on their trie node: one hash lookup per path segment); an
//! identity in one segment borrows that segment's keys.

use std::borrow::Cow;

use super::pattern::IdentityPattern;
use super::trie::{IdentityIndex, NO_MARK};
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

impl ExactKeys {
    /// Where the index of a mark starts; below it, the index.
    const KIND: u32 = 29;
    /// The revoked flag of a mark.
    const REVOKED: u32 = 1 << 31;

    /// The revoked flag and keys as one trie mark, or `None` when the index does not fit
    /// (the identity is then classified by the trie walk, as any other).
    fn mark(self, revoked: bool) -> Option<u32> {
        let (kind, index) = match self {
            Self::Segment(s) => (0, s),
            Self::Unsegmented => (1, 0),
            Self::Merged(m) => (2, m),
        };
        let mark = (index < 1 << Self::KIND)
            .then(|| (u32::from(revoked) * Self::REVOKED) | (kind << Self::KIND) | index)?;
        (mark != NO_MARK).then_some(mark)
    }

    /// The revoked flag and keys of a mark [`Self::mark`] made.
    fn of_mark(mark: u32) -> (bool, Self) {
        let index = mark & ((1 << Self::KIND) - 1);
        let at = match (mark >> Self::KIND) & 0b11 {
            0 => Self::Segment(index),
            1 => Self::Unsegmented,
            _ => Self::Merged(index),
        };
        (mark & Self::REVOKED != 0, at)
    }
}

/// Classifies identities for one compiled policy, from tables built once at compile time.
#[derive(Debug)]
pub(super) struct Classifier {
    /// Segment patterns valued by segment id, revoked ones by `REVOKED | index`; the node of
    /// each exactly named identity marked with its revoked flag and where its keys are.
    identities: IdentityIndex,
    keys: Keys,
    /// Unique per compiled policy in this process; tags its classifications.
    instance: u64,
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
        classifier.mark_exact(patterns);
        classifier
    }

    /// Classifies `id` (see the module docs for the cost of each case).
    pub(super) fn classify(&self, id: &SpiffeId) -> Classification<'_> {
        if let Some(mark) = self.identities.marked(id) {
            let (revoked, at) = ExactKeys::of_mark(mark);
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

    /// Marks the trie node of every identity a pattern names exactly with its revoked flag
    /// and where its keys are, and keeps the merged keys of those in several segments. An
    /// identity in one segment (or none) shares that segment's keys: no table of its own,
    /// whatever the number of identities.
    ///
    /// The pattern's own trie walk ([`IdentityIndex::overlapping`], for an exact pattern the
    /// same values as [`IdentityIndex::lookup`] of its ID) finds its segments.
    fn mark_exact<'p>(&mut self, patterns: impl Iterator<Item = &'p IdentityPattern>) {
        let mut segments = Vec::with_capacity(4);
        for pattern in patterns.filter(|p| p.is_exact()) {
            // An ID named twice (two segments, a segment and `revoked:`) is marked once.
            if self.identities.is_marked(pattern) {
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
                    self.merged.push(self.keys_of(several));
                    ExactKeys::Merged(self.merged.len() as u32 - 1)
                }
            };
            // The walks read values and children only, never marks: marking as we go is safe.
            if let Some(mark) = at.mark(revoked) {
                self.identities.mark(pattern, mark);
            }
        }
        self.merged.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::{ExactKeys, NO_MARK};

    #[test]
    fn a_mark_reads_back_as_the_flag_and_keys_it_was_made_of() {
        for revoked in [false, true] {
            for at in [
                ExactKeys::Segment(0),
                ExactKeys::Segment((1 << 29) - 1),
                ExactKeys::Unsegmented,
                ExactKeys::Merged(12),
            ] {
                let mark = at.mark(revoked).unwrap();
                assert_ne!(mark, NO_MARK);
                let (flag, back) = ExactKeys::of_mark(mark);
                assert_eq!((flag, format!("{back:?}")), (revoked, format!("{at:?}")));
            }
        }
        // An index that does not fit is left to the trie walk.
        assert_eq!(ExactKeys::Segment(1 << 29).mark(false), None);
    }
}
