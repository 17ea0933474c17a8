//! Blast radius (docs/blast-radius.md): which requests a source may make to a destination, read off
//! the compiled policy — *if this credential leaks, what can it reach?* and *who can reach
//! this workload?* Exact, never sampled: `decide` lets a request through (`allow`, or
//! `would-deny` under a `dry_run` deny) if and only if some [`Edge`] of the answer covers it.
//!
//! The unit of an answer is the *identity class*: the exact set of segments an identity
//! belongs to (with whether it is revoked). `decide` sees nothing else of an identity, so two
//! identities of one class are decided alike. Most classes are one segment, and are named by
//! it (`payments`); an identity in several segments is named by all of them
//! (`ci-runners+staging`), one in none `(unsegmented)` (or by its ID when the query names it).
//! The classes a pattern selector can reach (`spiffe://example.org/ns/staging/**`: "every
//! identity a leaked staging token could be") come from a walk of the segment trie
//! ([`IdentityIndex::classes`](crate::policy::trie::IdentityIndex::classes)), not from listing
//! identities.
//!
//! Each edge writes its allowed requests as methods × path patterns minus the patterns deny
//! rules carve out, split so that every part is exact: methods whose rules differ get edges
//! of their own. Allowed patterns wholly carved out are dropped (so `staging → payments` under
//! an allow-all and a `staging-never-reaches-prod` deny is no edge at all); carve-outs that
//! touch nothing allowed are not listed under `except` but under `except_lenient` when they
//! can still refuse the spelling a lenient upstream routes (`/v1/..;/admin` → `/admin`), as
//! `decide` checks deny rules on that spelling too. PURE: no I/O.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::path::NormalizedPath;
use crate::policy::compiled::CompiledPolicy;
use crate::policy::trie::MAX_CLASS_STATES;

mod classes;
mod edge;
mod grant;
mod selector;
mod walk;

pub use classes::identity_classes;
pub use edge::{Edge, Methods, Party};
pub use selector::{Selector, SelectorError};

/// The name of the class of identities in no segment.
pub const UNSEGMENTED: &str = "(unsegmented)";

/// The reach walk gave up: the policy's patterns overlap in too many ways.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the identity patterns overlap in more than {MAX_CLASS_STATES} ways; narrow the selector")]
pub struct ReachError;

/// A reach query given as text could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A selector is malformed or names nothing the policy knows; `side` is `from` or `to`.
    #[error("{side} {text}: {error}")]
    BadSelector {
        /// `from` or `to`.
        side: &'static str,
        /// The selector as given.
        text: String,
        /// What is wrong with it.
        error: SelectorError,
    },
    /// The reach walk gave up.
    #[error(transparent)]
    TooManyClasses(#[from] ReachError),
}

/// The answer to one reach query.
#[derive(Debug, Clone)]
pub struct Reach {
    /// The policy's version.
    pub policy_version: String,
    /// The `--from` selector as given (`*` when omitted).
    pub from: String,
    /// The `--to` selector as given (`*` when omitted).
    pub to: String,
    /// Every edge, sorted by source, destination, methods.
    pub edges: Vec<Edge>,
    /// Classes the source selector matched that are revoked (they reach nothing).
    pub revoked_sources: Vec<String>,
    /// Whether `to: "*"` grants were folded into one `source → *` edge per source (see
    /// [`MAX_LISTED_PAIRS`]); then `covers` is exact only for the pairs listed.
    pub folded: bool,
}

/// Above this many (source class × destination class) pairs, what a source may do through
/// `to: "*"` rules is written once, as an edge to [`ANY_DESTINATION`], instead of once per
/// destination: with a `"*"` → `"*"` health-check rule, a 10k-segment fleet would otherwise
/// list 10⁸ edges. The pairs that other rules connect are still listed, exactly.
pub const MAX_LISTED_PAIRS: usize = 1_000_000;

/// The destination name of a folded edge: every destination not listed for that source,
/// minus what the edge's `deny_rules` refuse on the destinations they select.
pub const ANY_DESTINATION: &str = "*";

impl Reach {
    /// Whether some edge between these parties covers the request (the request's parties
    /// classified as `decide` classifies them: by segment names and revocation).
    pub fn covers(
        &self,
        source_segments: &[&str],
        destination_segments: &[&str],
        method: &str,
        path: &NormalizedPath,
    ) -> bool {
        self.edges.iter().any(|e| {
            e.source.segments == source_segments
                && e.destination.segments == destination_segments
                && e.covers(method, path)
        })
    }
}

/// Every edge from the identities `from` selects to those `to` selects; each side is the
/// selector as given (echoed in the answer) and as read.
///
/// # Errors
/// [`ReachError`] when the identity patterns overlap beyond the walk's bound.
pub fn reach(
    policy: &CompiledPolicy,
    from: (&str, &Selector),
    to: (&str, &Selector),
) -> Result<Reach, ReachError> {
    let sources = classes::classes_of(policy, from.1)?;
    let mut destinations: Vec<Vec<u32>> = classes::classes_of(policy, to.1)?
        .into_iter()
        .map(|c| c.segments)
        .collect();
    destinations.sort_unstable();
    destinations.dedup();
    let queried = |sel: &Selector| match sel {
        Selector::Id(id) => Some(id.as_str().to_owned()),
        _ => None,
    };
    let mut walk = walk::Walk::new(policy, &destinations, sources.len(), queried(to.1));
    let source_id = queried(from.1);
    let mut revoked_sources = Vec::new();
    for class in &sources {
        let party = walk.party(&class.segments, source_id.as_deref());
        if class.revoked {
            revoked_sources.push(party.name.clone());
            continue;
        }
        walk.add_source(&class.segments, &party);
    }
    revoked_sources.sort_unstable();
    revoked_sources.dedup();
    let folded = walk.fold;
    Ok(Reach {
        policy_version: policy.version.clone(),
        from: from.0.to_owned(),
        to: to.0.to_owned(),
        edges: sorted(walk.edges),
        revoked_sources,
        folded,
    })
}

/// The reach between two selectors given as text (`*` for an omitted side): what
/// `policy reach --from FROM --to TO` and the admin `/reach` endpoint answer.
///
/// # Errors
/// [`QueryError`]: a bad selector (its message prefixed by its side, `from …:` or `to …:`),
/// or the walk's bound.
pub fn reach_texts(policy: &CompiledPolicy, from: &str, to: &str) -> Result<Reach, QueryError> {
    let parse = |side: &'static str, text: &str| {
        Selector::parse(policy, text).map_err(|error| QueryError::BadSelector {
            side,
            text: text.to_owned(),
            error,
        })
    };
    let (f, t) = (parse("from", from)?, parse("to", to)?);
    Ok(reach(policy, (from, &f), (to, &t))?)
}

/// Edges sorted by source, destination, methods.
fn sorted(mut edges: Vec<Edge>) -> Vec<Edge> {
    edges.sort_by(|a, b| {
        (&a.source.name, &a.destination.name, &a.methods).cmp(&(
            &b.source.name,
            &b.destination.name,
            &b.methods,
        ))
    });
    edges
}

impl Serialize for Reach {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("policy_version", &self.policy_version)?;
        let query: BTreeMap<&str, &str> = [("from", &*self.from), ("to", &*self.to)].into();
        map.serialize_entry("query", &query)?;
        map.serialize_entry("edges", &self.edges)?;
        map.serialize_entry("revoked_sources", &self.revoked_sources)?;
        if self.folded {
            map.serialize_entry("folded", &true)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests;
