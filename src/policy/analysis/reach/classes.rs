//! The identity classes a selector stands for (docs/blast-radius.md): the exact sets of segments an
//! identity it selects can belong to, with whether it is revoked, read off a walk of the
//! segment trie ([`IdentityIndex::classes`]), never by listing identities.

use super::{ReachError, Selector};
use crate::policy::classify::REVOKED;
use crate::policy::compiled::CompiledPolicy;
use crate::policy::pattern::IdentityPattern;
use crate::policy::trie::IdentityIndex;

/// One identity class: its segment ids (ascending) and whether it is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Class {
    pub(super) segments: Vec<u32>,
    pub(super) revoked: bool,
}

/// Every identity class some SPIFFE ID can be in (revoked ones aside), each as its segment
/// names (sorted; empty for identities in no segment), sorted.
///
/// # Errors
/// [`ReachError`] when the identity patterns overlap beyond the walk's bound.
pub fn identity_classes(policy: &CompiledPolicy) -> Result<Vec<Vec<String>>, ReachError> {
    let mut out: Vec<Vec<String>> = classes_of(policy, &Selector::Any)?
        .into_iter()
        .filter(|c| !c.revoked)
        .map(|c| {
            let names = c.segments.iter();
            names
                .map(|s| policy.segments[*s as usize].name.clone())
                .collect()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The identity classes a selector can stand for, sorted.
pub(super) fn classes_of(
    policy: &CompiledPolicy,
    selector: &Selector,
) -> Result<Vec<Class>, ReachError> {
    let raw = match selector {
        Selector::Id(id) => {
            return Ok(vec![Class {
                segments: policy.classifier.segment_ids(id),
                revoked: policy.classify(id).is_revoked(),
            }]);
        }
        Selector::Any => every_class(policy.classifier.index())?,
        Selector::Pattern(p) => within(policy, [p])?,
        Selector::Segment(s) => within(policy, &policy.segments[*s as usize].identities)?,
        Selector::Labels(_, members) => within(
            policy,
            members
                .iter()
                .flat_map(|s| &policy.segments[*s as usize].identities),
        )?,
    };
    let mut classes: Vec<Class> = raw
        .into_iter()
        .map(|values| Class {
            revoked: values.iter().any(|v| v & REVOKED != 0),
            segments: values.into_iter().filter(|v| v & REVOKED == 0).collect(),
        })
        .collect();
    classes.sort_unstable();
    classes.dedup();
    Ok(classes)
}

/// The classes of every identity, the one in no segment included.
fn every_class(index: &IdentityIndex) -> Result<Vec<Vec<u32>>, ReachError> {
    // An identity of a trust domain the policy never names is in no segment.
    let mut all = vec![Vec::new()];
    for td in index.trust_domains() {
        all.extend(index.classes(td, None).map_err(|_| ReachError)?);
    }
    Ok(all)
}

/// The classes of identities matching one of `patterns`.
fn within<'p>(
    policy: &CompiledPolicy,
    patterns: impl IntoIterator<Item = &'p IdentityPattern>,
) -> Result<Vec<Vec<u32>>, ReachError> {
    let index = policy.classifier.index();
    let mut query = IdentityIndex::default();
    patterns.into_iter().for_each(|p| query.insert(p, 0));
    let mut out = Vec::new();
    for td in query.trust_domains() {
        out.extend(index.classes(td, Some(&query)).map_err(|_| ReachError)?);
    }
    Ok(out)
}
