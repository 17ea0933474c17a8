//! `Classification`: what the policy knows about one identity — revoked or not, and the
//! index keys it is filed under as a source and as a destination (PRODUCT.md §3, §7).
//!
//! Nothing here allocates per request in the common cases: identities the policy names
//! exactly are classified at compile time (one hash lookup), and an identity that matches
//! the patterns of a single segment (e.g. `spiffe://…/agent/*/read`) borrows that
//! segment's precomputed keys after a trie walk. Only an identity matched by the patterns
//! of several segments gets its keys merged on the spot.

use std::borrow::Cow;

use rustc_hash::FxHashMap;

use super::compiled::{CompiledPolicy, REVOKED};
use super::pattern::IdentityPattern;
use crate::identity::SpiffeId;

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
    /// The [`CompiledPolicy::instance`] that made it: keys mean nothing in another policy.
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

/// The classification tables a [`CompiledPolicy`] carries.
#[derive(Debug, Default)]
pub(super) struct Classifier {
    /// Identities named exactly by some pattern: revoked flag and keys.
    exact: FxHashMap<Box<str>, (bool, KeySets)>,
    /// Segment id → the keys of an identity in that segment only.
    segment: Vec<KeySets>,
    /// The keys of an identity in no segment (only `"*"` rules apply).
    unsegmented: KeySets,
}

impl CompiledPolicy {
    /// Classifies `id` (see the module docs for the cost of each case).
    pub fn classify(&self, id: &SpiffeId) -> Classification<'_> {
        let tables = &self.classifier;
        if let Some((revoked, keys)) = tables.exact.get(id.as_str()) {
            return Classification {
                policy: self.instance,
                revoked: *revoked,
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
            (None, _) => Cow::Borrowed(&tables.unsegmented),
            (Some(s), false) => Cow::Borrowed(&tables.segment[s as usize]),
            (Some(_), true) => Cow::Owned(self.merged_keys(id)),
        };
        Classification {
            policy: self.instance,
            revoked,
            keys,
        }
    }

    /// Keys of every segment `id` belongs to, merged, plus `ANY`.
    fn merged_keys(&self, id: &SpiffeId) -> KeySets {
        let mut keys = Vec::with_capacity(8);
        self.identities.lookup(id, &mut |v| {
            if v & REVOKED == 0 {
                keys.extend_from_slice(&self.segment_keys[v as usize]);
            }
        });
        self.key_sets(keys)
    }

    /// Sorts, de-duplicates, adds `ANY`, and keeps the keys some rule is filed under.
    fn key_sets(&self, mut keys: Vec<u32>) -> KeySets {
        keys.sort_unstable();
        keys.dedup();
        keys.push(self.any_key());
        let as_dst = |k: &&u32| self.by_dst[**k as usize].is_some();
        KeySets {
            src: keys
                .iter()
                .filter(|k| self.src_used[**k as usize])
                .copied()
                .collect(),
            dst: keys.iter().filter(as_dst).copied().collect(),
        }
    }
}

/// Builds the classification tables once, at compile time.
pub(super) fn build_classifier<'p>(
    policy: &CompiledPolicy,
    patterns: impl Iterator<Item = &'p IdentityPattern>,
) -> Classifier {
    let segment = policy
        .segment_keys
        .iter()
        .map(|k| policy.key_sets(k.to_vec()))
        .collect();
    let mut exact = FxHashMap::default();
    for pattern in patterns.filter(|p| p.is_exact()) {
        let text = pattern.to_string();
        if exact.contains_key(text.as_str()) {
            continue;
        }
        // Invariant: an exact pattern is a valid SPIFFE ID by construction; skip otherwise.
        if let Ok(id) = SpiffeId::parse(&text) {
            let mut revoked = false;
            policy
                .identities
                .lookup(&id, &mut |v| revoked |= v & REVOKED != 0);
            exact.insert(text.into_boxed_str(), (revoked, policy.merged_keys(&id)));
        }
    }
    Classifier {
        exact,
        segment,
        unsegmented: policy.key_sets(Vec::new()),
    }
}
