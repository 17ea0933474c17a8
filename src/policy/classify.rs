//! `Classification`: what the policy knows about one identity — revoked or not, and the
//! index keys it is filed under as a source and as a destination (PRODUCT.md §3, §7).
//!
//! Every identity written exactly in the policy (the common case: one workload, one ID)
//! is classified once at compile time and found with a single hash lookup per request.
//! Identities reached only through `*`/`**` patterns walk the trie; the proxy can keep a
//! connection's classification for as long as the policy version does not change.

use std::borrow::Cow;

use rustc_hash::FxHashMap;

use super::compile::CompiledPolicy;
use super::pattern::IdentityPattern;
use crate::identity::SpiffeId;

/// An identity's standing in one policy version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classification {
    /// Step 1 of the decision: the identity matches `revoked`.
    pub(super) revoked: bool,
    /// Keys with rules filed under them as a source (`ANY` included when used).
    pub(super) src_keys: Box<[u32]>,
    /// Keys with rules filed under them as a destination (`ANY` included when used).
    pub(super) dst_keys: Box<[u32]>,
}

impl Classification {
    /// Whether the identity is revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked
    }
}

impl CompiledPolicy {
    /// Classifies `id`: a hash lookup for identities the policy names exactly, a trie walk
    /// otherwise.
    pub fn classify(&self, id: &SpiffeId) -> Cow<'_, Classification> {
        match self.exact.get(id.as_str()) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(self.walk_classify(id)),
        }
    }

    /// Classification by walking the identity and revoked tries.
    pub(super) fn walk_classify(&self, id: &SpiffeId) -> Classification {
        let mut keys = Vec::with_capacity(8);
        self.identities.lookup(id, &mut |s| {
            keys.extend_from_slice(&self.segment_keys[s as usize])
        });
        keys.sort_unstable();
        keys.dedup();
        keys.push(self.any_key());
        let filed_as_dst = |k: &&u32| self.by_dst[**k as usize].is_some();
        Classification {
            revoked: self.revoked_index.contains(id),
            src_keys: keys
                .iter()
                .filter(|k| self.src_used[**k as usize])
                .copied()
                .collect(),
            dst_keys: keys.iter().filter(filed_as_dst).copied().collect(),
        }
    }
}

/// Classifies every identity that some pattern names exactly, once, at compile time.
pub(super) fn classify_exact<'p>(
    policy: &CompiledPolicy,
    patterns: impl Iterator<Item = &'p IdentityPattern>,
) -> FxHashMap<Box<str>, Classification> {
    let mut exact = FxHashMap::default();
    for pattern in patterns.filter(|p| p.is_exact()) {
        let text = pattern.to_string();
        if exact.contains_key(text.as_str()) {
            continue;
        }
        // Invariant: an exact pattern is a valid SPIFFE ID by construction; skip otherwise.
        if let Ok(id) = SpiffeId::parse(&text) {
            exact.insert(text.into_boxed_str(), policy.walk_classify(&id));
        }
    }
    exact
}
