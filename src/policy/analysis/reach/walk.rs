//! The walk that computes a reach answer: for each source class, the destination classes some
//! allow rule could connect it to (found through the rule index's keys, never by trying every
//! pair), then the exact grants of the rules filed between the two. Above
//! [`MAX_LISTED_PAIRS`] pairs, `to: "*"` grants are folded into one edge per source.

use std::sync::Arc;

use super::edge::{Edge, Party};
use super::grant::{all_paths, grants};
use super::{ANY_DESTINATION, MAX_LISTED_PAIRS, UNSEGMENTED};
use crate::policy::classify::KeySets;
use crate::policy::compiled::CompiledPolicy;
use crate::policy::pattern::PathPattern;
use crate::policy::source::Effect;

/// State of one reach computation over a set of destination classes.
pub(super) struct Walk<'p> {
    policy: &'p CompiledPolicy,
    /// Destination classes: segments, keys, party.
    destinations: Vec<(KeySets, Arc<Party>)>,
    /// Key → destination classes filed under it.
    by_key: Vec<Vec<u32>>,
    /// Source key → destination keys with an allow rule for it.
    allow_dsts: Vec<Vec<u32>>,
    /// `/**`, for rules without `paths`.
    all_paths: Arc<PathPattern>,
    /// Marks candidates already taken for the current source.
    stamp: Vec<u32>,
    round: u32,
    rules: Vec<u32>,
    /// The edges found so far, unsorted.
    pub(super) edges: Vec<Edge>,
    /// Fold `to: "*"` grants into one edge per source ([`MAX_LISTED_PAIRS`]).
    pub(super) fold: bool,
    /// Source key → destination keys (not `ANY`) with a deny rule for it, when folding.
    deny_dsts: Vec<Vec<u32>>,
    /// The party standing for every destination in a folded edge.
    any_destination: Arc<Party>,
}

impl<'p> Walk<'p> {
    /// A walk towards `classes` (segment ids each) for `sources` source classes; an
    /// unsegmented destination class is named `queried` when given.
    pub(super) fn new(
        policy: &'p CompiledPolicy,
        classes: &[Vec<u32>],
        sources: usize,
        queried: Option<String>,
    ) -> Self {
        let keys = policy.by_dst.len();
        let mut walk = Self {
            policy,
            destinations: Vec::with_capacity(classes.len()),
            by_key: vec![Vec::new(); keys],
            allow_dsts: vec![Vec::new(); keys],
            all_paths: Arc::new(all_paths()),
            stamp: vec![0; classes.len()],
            round: 0,
            rules: Vec::new(),
            edges: Vec::new(),
            fold: sources.saturating_mul(classes.len()) > MAX_LISTED_PAIRS,
            deny_dsts: vec![Vec::new(); keys],
            any_destination: Arc::new(Party {
                name: ANY_DESTINATION.to_owned(),
                segments: Vec::new(),
            }),
        };
        for (i, segments) in classes.iter().enumerate() {
            let keys = policy.classifier.keys_of(segments);
            for &k in keys.dst.iter() {
                walk.by_key[k as usize].push(i as u32);
            }
            let party = walk.party(segments, queried.as_deref());
            walk.destinations.push((keys, party));
        }
        walk.index_rules();
        walk
    }

    /// Files, for each source key, the destination keys with an allow rule (and, apart from
    /// `ANY`, a deny rule) for it.
    fn index_rules(&mut self) {
        let (policy, keys) = (self.policy, self.by_key.len());
        for (d, bucket) in policy.by_dst.iter().enumerate() {
            let Some(bucket) = bucket else { continue };
            for (s, rules) in bucket.by_src.iter() {
                let allows = |r: &u32| policy.rules[*r as usize].effect == Effect::Allow;
                if rules.iter().any(allows) {
                    self.allow_dsts[*s as usize].push(d as u32);
                }
                if d + 1 < keys && !rules.iter().all(allows) {
                    self.deny_dsts[*s as usize].push(d as u32);
                }
            }
        }
    }

    /// The party of a class; an unsegmented class of a queried ID is named by the ID.
    pub(super) fn party(&self, segments: &[u32], queried: Option<&str>) -> Arc<Party> {
        let names: Vec<String> = segments
            .iter()
            .map(|s| self.policy.segments[*s as usize].name.clone())
            .collect();
        let name = match (names.is_empty(), queried) {
            (true, Some(id)) => id.to_owned(),
            (true, None) => UNSEGMENTED.to_owned(),
            (false, _) => names.join("+"),
        };
        Arc::new(Party {
            name,
            segments: names,
        })
    }

    /// Adds the edges from one (unrevoked) source class.
    pub(super) fn add_source(&mut self, segments: &[u32], source: &Arc<Party>) {
        let keys = self.policy.classifier.keys_of(segments);
        self.round += 1;
        let any = self.by_key.len() as u32 - 1;
        if self.fold {
            self.add_folded(&keys, source, any);
        }
        let candidates = self.candidates(&keys, any);
        let mut rules = std::mem::take(&mut self.rules);
        for c in candidates {
            let (dst_keys, destination) = &self.destinations[c as usize];
            rules_between(self.policy, &keys, dst_keys, &mut rules);
            let grants = grants(self.policy, &rules, &self.all_paths);
            self.edges
                .extend(grants.into_iter().map(|g| g.into_edge(source, destination)));
        }
        self.rules = rules;
    }

    /// The destination classes some allow rule filed under a source key reaches, ascending
    /// (`to: "*"` rules aside when folding).
    fn candidates(&mut self, keys: &KeySets, any: u32) -> Vec<u32> {
        let mut candidates = Vec::new();
        for &s in keys.src.iter() {
            for &d in &self.allow_dsts[s as usize] {
                if self.fold && d == any {
                    continue;
                }
                for &c in &self.by_key[d as usize] {
                    if self.stamp[c as usize] != self.round {
                        self.stamp[c as usize] = self.round;
                        candidates.push(c);
                    }
                }
            }
        }
        candidates.sort_unstable();
        candidates
    }

    /// The folded edge: what `source` may do through rules whose destination is `"*"`,
    /// naming the deny rules that refuse some of it on the destinations they select.
    fn add_folded(&mut self, keys: &KeySets, source: &Arc<Party>, any: u32) {
        let only_any = KeySets {
            src: keys.src.clone(),
            dst: Box::new([any]),
        };
        let mut rules = std::mem::take(&mut self.rules);
        rules_between(self.policy, &only_any, &only_any, &mut rules);
        let carving = self.carving(keys);
        for g in grants(self.policy, &rules, &self.all_paths) {
            let mut edge = g.into_edge(source, &self.any_destination);
            edge.deny_rules.extend(carving.iter().cloned());
            edge.deny_rules.sort_unstable();
            edge.deny_rules.dedup();
            self.edges.push(edge);
        }
        self.rules = rules;
    }

    /// The enforcing deny rules filed for a source's keys towards some destination key but
    /// `ANY`, by name, sorted: what carves a folded edge on the destinations they select.
    fn carving(&self, keys: &KeySets) -> Vec<String> {
        let policy = self.policy;
        let mut carving: Vec<String> = keys
            .src
            .iter()
            .flat_map(|s| self.deny_dsts[*s as usize].iter())
            .filter_map(|d| policy.by_dst[*d as usize].as_ref())
            .flat_map(|bucket| keys.src.iter().filter_map(|s| bucket.rules_for(*s)))
            .flatten()
            .map(|r| &policy.rules[*r as usize])
            .filter(|r| r.effect == Effect::Deny && !r.dry_run)
            .map(|r| r.name.clone())
            .collect();
        carving.sort_unstable();
        carving.dedup();
        carving
    }
}

/// Rules filed under any of the source's and the destination's keys, ascending.
fn rules_between(policy: &CompiledPolicy, src: &KeySets, dst: &KeySets, out: &mut Vec<u32>) {
    out.clear();
    for &d in dst.dst.iter() {
        let Some(Some(bucket)) = policy.by_dst.get(d as usize) else {
            continue;
        };
        for &s in src.src.iter() {
            if let Some(rules) = bucket.rules_for(s) {
                out.extend_from_slice(rules);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
}
