//! Blast radius (PRODUCT.md §9): which requests a source may make to a destination, read off
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
//! ([`IdentityIndex::classes`]), not from listing identities.
//!
//! Each edge writes its allowed requests as methods × path patterns minus the patterns deny
//! rules carve out, split so that every part is exact: methods whose rules differ get edges
//! of their own. Allowed patterns wholly carved out are dropped (so `staging → payments` under
//! an allow-all and a `staging-never-reaches-prod` deny is no edge at all); carve-outs that
//! touch nothing allowed are not listed under `except` but under `except_lenient` when they
//! can still refuse the spelling a lenient upstream routes (`/v1/..;/admin` → `/admin`), as
//! `decide` checks deny rules on that spelling too. PURE: no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::classify::{KeySets, REVOKED};
use super::compiled::{CompiledPolicy, Rule};
use super::method::MethodBit;
use super::pattern::{IdentityPattern, PathPattern, trim_trailing_slash};
use super::region;
use super::source::Effect;
use super::trie::{IdentityIndex, MAX_CLASS_STATES};
use super::validate::closest_name;
use crate::identity::SpiffeId;
use crate::path::{NormalizedPath, upstream_variant};

/// The name of the class of identities in no segment.
pub const UNSEGMENTED: &str = "(unsegmented)";

/// A `--from` / `--to` selector (PRODUCT.md §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One SPIFFE ID.
    Id(SpiffeId),
    /// Every identity an ID pattern can match.
    Pattern(IdentityPattern),
    /// Every identity of a segment, by id.
    Segment(u32),
    /// Every identity of the segments carrying all these labels (ids ascending).
    Labels(BTreeMap<String, String>, Vec<u32>),
    /// `*`: every identity.
    Any,
}

/// A selector that names nothing the policy knows, or is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl Selector {
    /// Reads a selector: `*`, a SPIFFE ID, an ID pattern (with `*` or `**`), `k=v[,k=v…]`,
    /// or a segment name.
    ///
    /// # Errors
    /// A message naming the problem and, for an unknown segment, the closest defined name.
    pub fn parse(policy: &CompiledPolicy, text: &str) -> Result<Self, SelectorError> {
        let text = text.trim();
        let fail = |m: String| Err(SelectorError(m));
        if text == "*" {
            return Ok(Self::Any);
        }
        if text.starts_with("spiffe://") {
            if text.contains('*') {
                return IdentityPattern::parse(text)
                    .map(Self::Pattern)
                    .or_else(|e| fail(format!("`{text}` is not a valid ID pattern: {e}")));
            }
            return match SpiffeId::parse(text) {
                Ok(id) if id.path().is_empty() => fail(format!(
                    "`{text}` is a trust domain, not a workload; did you mean `{text}/**`?"
                )),
                Ok(id) => Ok(Self::Id(id)),
                Err(e) => fail(format!("`{text}` is not a valid SPIFFE ID: {e}")),
            };
        }
        if text.contains('=') {
            return Self::labels(policy, text);
        }
        if text.contains("://") || text.is_empty() {
            return fail(format!(
                "`{text}` is not a selector: give a SPIFFE ID (spiffe://…), an ID pattern, a \
                 segment name, `k=v` labels or `*`"
            ));
        }
        match policy.segment_id(text) {
            Some(s) => Ok(Self::Segment(s)),
            None => {
                let names = policy.segments.iter().map(|s| s.name.as_str());
                let hint = match closest_name(text, names) {
                    Some(n) => format!("; did you mean `{n}`?"),
                    None => String::new(),
                };
                fail(format!("no segment named `{text}`{hint}"))
            }
        }
    }

    /// `k=v,k2=v2`: every segment carrying all those labels.
    fn labels(policy: &CompiledPolicy, text: &str) -> Result<Self, SelectorError> {
        let mut labels = BTreeMap::new();
        for part in text.split(',').map(str::trim) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(SelectorError(format!(
                    "`{part}` in `{text}` is not `key=value`"
                )));
            };
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() || v.contains('=') {
                return Err(SelectorError(format!(
                    "`{part}` in `{text}` is not `key=value`"
                )));
            }
            if labels.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(SelectorError(format!(
                    "label `{k}` is given twice in `{text}`"
                )));
            }
        }
        let members: Vec<u32> = (0..policy.segments.len() as u32)
            .filter(|s| {
                let have = &policy.segments[*s as usize].labels;
                labels.iter().all(|(k, v)| have.get(k) == Some(v))
            })
            .collect();
        if members.is_empty() {
            let known = |k: &str| {
                let mut values: Vec<&str> = policy
                    .segments
                    .iter()
                    .filter_map(|s| s.labels.get(k).map(String::as_str))
                    .collect();
                values.sort_unstable();
                values.dedup();
                values
            };
            let hints: Vec<String> = labels
                .keys()
                .map(|k| match known(k).as_slice() {
                    [] => format!("no segment has a `{k}` label"),
                    vs => format!("`{k}` is one of {}", vs.join(", ")),
                })
                .collect();
            return Err(SelectorError(format!(
                "no segment carries `{text}` ({})",
                hints.join("; ")
            )));
        }
        Ok(Self::Labels(labels, members))
    }
}

/// The reach walk gave up: the policy's patterns overlap in too many ways.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the identity patterns overlap in more than {MAX_CLASS_STATES} ways; narrow the selector")]
pub struct ReachError;

/// One side of an edge: an identity class.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Party {
    /// Its segment names joined with `+`, [`UNSEGMENTED`], or the queried ID.
    pub name: String,
    /// The segments, by name, sorted; empty for identities in no segment.
    pub segments: Vec<String>,
}

/// The methods of an edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Methods {
    /// Exactly these (upper case; a request's method matches ignoring case).
    Only(Vec<String>),
    /// Every method but these (`AllBut([])` is any method).
    AllBut(Vec<String>),
}

impl Methods {
    /// Whether a request method is one of them (ignoring ASCII case, as `decide`).
    pub fn contains(&self, method: &str) -> bool {
        let listed = |list: &[String]| list.iter().any(|m| m.eq_ignore_ascii_case(method));
        match self {
            Self::Only(list) => listed(list),
            Self::AllBut(list) => !listed(list),
        }
    }
}

impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Only(list) => f.write_str(&list.join(",")),
            Self::AllBut(list) if list.is_empty() => f.write_str("*"),
            Self::AllBut(list) => write!(f, "* except {}", list.join(",")),
        }
    }
}

/// Requests a source class may make to a destination class (PRODUCT.md §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Who sends.
    pub source: Arc<Party>,
    /// Who is reached.
    pub destination: Arc<Party>,
    /// The methods.
    pub methods: Methods,
    /// Allowed path patterns (none covered by another; `/**` is every path).
    pub paths: Vec<Arc<PathPattern>>,
    /// Carved out of `paths` by deny rules.
    pub except: Vec<Arc<PathPattern>>,
    /// Deny patterns that touch no allowed path as written, but refuse the spelling a lenient
    /// upstream would route (`;parameters`, `..;`), as `decide` does.
    pub except_lenient: Vec<Arc<PathPattern>>,
    /// The allow rules granting it, by name.
    pub allow_rules: Vec<String>,
    /// The deny rules carving `except`, by name.
    pub deny_rules: Vec<String>,
    /// `dry_run` deny rules that would refuse part of it (reported as allowed, flagged).
    pub dry_run_rules: Vec<String>,
}

impl Edge {
    /// Whether this edge covers a request of `method` to `path` (parties aside): the exact
    /// reading of the edge, `;`-spelling and climbing paths included.
    pub fn covers(&self, method: &str, path: &NormalizedPath) -> bool {
        if !self.methods.contains(method) {
            return false;
        }
        let trimmed = trim_trailing_slash(path.as_str());
        let hit = |ps: &[Arc<PathPattern>], p: &str| ps.iter().any(|x| x.matches_trimmed(p));
        if !hit(&self.paths, trimmed) || hit(&self.except, trimmed) {
            return false;
        }
        match upstream_variant(path.as_str()) {
            None => true,
            Some(Err(_)) => false,
            Some(Ok(variant)) => {
                let v = trim_trailing_slash(variant.as_str());
                !hit(&self.except, v) && !hit(&self.except_lenient, v)
            }
        }
    }

    /// The requests of several edges (one pair's), `; `-joined, or `nothing`.
    pub fn all_requests(edges: &[Edge]) -> String {
        if edges.is_empty() {
            return "nothing".to_owned();
        }
        let parts: Vec<String> = edges.iter().map(Edge::requests).collect();
        parts.join("; ")
    }

    /// `GET,POST /v1/** except /v1/admin/**`.
    pub fn requests(&self) -> String {
        let join =
            |ps: &[Arc<PathPattern>]| ps.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" ");
        let mut out = format!("{} {}", self.methods, join(&self.paths));
        if !self.except.is_empty() {
            out.push_str(" except ");
            out.push_str(&join(&self.except));
        }
        out
    }
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

/// One identity class: its segment ids (ascending) and whether it is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Class {
    segments: Vec<u32>,
    revoked: bool,
}

impl CompiledPolicy {
    /// The segment with this name.
    pub fn segment_id(&self, name: &str) -> Option<u32> {
        self.segments
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| i as u32)
    }

    /// Every edge from the identities `from` selects to those `to` selects.
    ///
    /// # Errors
    /// [`ReachError`] when the identity patterns overlap beyond the walk's bound.
    pub fn reach(
        &self,
        from: (&str, &Selector),
        to: (&str, &Selector),
    ) -> Result<Reach, ReachError> {
        let sources = self.classes_of(from.1)?;
        let mut destinations: Vec<Vec<u32>> = self
            .classes_of(to.1)?
            .into_iter()
            .map(|c| c.segments)
            .collect();
        destinations.sort_unstable();
        destinations.dedup();
        let queried = |sel: &Selector| match sel {
            Selector::Id(id) => Some(id.as_str().to_owned()),
            _ => None,
        };
        let mut walk = Walk::new(self, &destinations, queried(to.1));
        walk.fold = sources.len().saturating_mul(destinations.len()) > MAX_LISTED_PAIRS;
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
        let walk_folded = walk.fold;
        let mut edges = walk.edges;
        edges.sort_by(|a, b| {
            (&a.source.name, &a.destination.name, &a.methods).cmp(&(
                &b.source.name,
                &b.destination.name,
                &b.methods,
            ))
        });
        revoked_sources.sort_unstable();
        revoked_sources.dedup();
        Ok(Reach {
            policy_version: self.version.clone(),
            from: from.0.to_owned(),
            to: to.0.to_owned(),
            edges,
            revoked_sources,
            folded: walk_folded,
        })
    }

    /// Every identity class some SPIFFE ID can be in (revoked ones aside), each as its
    /// segment names (sorted; empty for identities in no segment), sorted.
    ///
    /// # Errors
    /// [`ReachError`] when the identity patterns overlap beyond the walk's bound.
    pub fn identity_classes(&self) -> Result<Vec<Vec<String>>, ReachError> {
        let mut out: Vec<Vec<String>> = self
            .classes_of(&Selector::Any)?
            .into_iter()
            .filter(|c| !c.revoked)
            .map(|c| {
                let names = c.segments.iter();
                names
                    .map(|s| self.segments[*s as usize].name.clone())
                    .collect()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The identity classes a selector can stand for.
    fn classes_of(&self, selector: &Selector) -> Result<Vec<Class>, ReachError> {
        let index = self.classifier.index();
        let raw = match selector {
            Selector::Id(id) => {
                return Ok(vec![Class {
                    segments: self.classifier.segment_ids(id),
                    revoked: self.classify(id).is_revoked(),
                }]);
            }
            Selector::Any => {
                // An identity of a trust domain the policy never names is in no segment.
                let mut all = vec![Vec::new()];
                for td in index.trust_domains() {
                    all.extend(index.classes(td, None).map_err(|_| ReachError)?);
                }
                all
            }
            Selector::Pattern(p) => within(index, [p])?,
            Selector::Segment(s) => within(index, &self.segments[*s as usize].identities)?,
            Selector::Labels(_, members) => within(
                index,
                members
                    .iter()
                    .flat_map(|s| &self.segments[*s as usize].identities),
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

    /// Rules filed under any of the source's and the destination's keys, ascending.
    fn rules_between(&self, src: &KeySets, dst: &KeySets, out: &mut Vec<u32>) {
        out.clear();
        for &d in dst.dst.iter() {
            let Some(Some(bucket)) = self.by_dst.get(d as usize) else {
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
}

/// The classes of identities matching one of `patterns`.
fn within<'p>(
    index: &IdentityIndex,
    patterns: impl IntoIterator<Item = &'p IdentityPattern>,
) -> Result<Vec<Vec<u32>>, ReachError> {
    let mut query = IdentityIndex::default();
    patterns.into_iter().for_each(|p| query.insert(p, 0));
    let mut out = Vec::new();
    for td in query.trust_domains() {
        out.extend(index.classes(td, Some(&query)).map_err(|_| ReachError)?);
    }
    Ok(out)
}

/// State of one reach computation over a set of destination classes.
struct Walk<'p> {
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
    edges: Vec<Edge>,
    /// Fold `to: "*"` grants into one edge per source ([`MAX_LISTED_PAIRS`]).
    fold: bool,
    /// Source key → destination keys (not `ANY`) with a deny rule for it, when folding.
    deny_dsts: Vec<Vec<u32>>,
    /// The party standing for every destination in a folded edge.
    any_destination: Arc<Party>,
}

impl<'p> Walk<'p> {
    fn new(policy: &'p CompiledPolicy, classes: &[Vec<u32>], queried: Option<String>) -> Self {
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
            fold: false,
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
        for (d, bucket) in policy.by_dst.iter().enumerate() {
            let Some(bucket) = bucket else { continue };
            for (s, rules) in bucket.by_src.iter() {
                let allows = |r: &u32| policy.rules[*r as usize].effect == Effect::Allow;
                if rules.iter().any(allows) {
                    walk.allow_dsts[*s as usize].push(d as u32);
                }
                if d + 1 < keys && !rules.iter().all(allows) {
                    walk.deny_dsts[*s as usize].push(d as u32);
                }
            }
        }
        walk
    }

    /// The party of a class; an unsegmented class of a queried ID is named by the ID.
    fn party(&self, segments: &[u32], queried: Option<&str>) -> Arc<Party> {
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
    fn add_source(&mut self, segments: &[u32], source: &Arc<Party>) {
        let keys = self.policy.classifier.keys_of(segments);
        self.round += 1;
        let any = self.by_key.len() as u32 - 1;
        if self.fold {
            self.add_folded(&keys, source, any);
        }
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
        let mut rules = std::mem::take(&mut self.rules);
        for c in candidates {
            let (dst_keys, destination) = &self.destinations[c as usize];
            self.policy.rules_between(&keys, dst_keys, &mut rules);
            let grants = grants(self.policy, &rules, &self.all_paths);
            self.edges.extend(grants.into_iter().map(|g| Edge {
                source: source.clone(),
                destination: destination.clone(),
                methods: g.methods,
                paths: g.paths,
                except: g.except,
                except_lenient: g.except_lenient,
                allow_rules: g.allow_rules,
                deny_rules: g.deny_rules,
                dry_run_rules: g.dry_run_rules,
            }));
        }
        self.rules = rules;
    }
}

impl Walk<'_> {
    /// The folded edge: what `source` may do through rules whose destination is `"*"`,
    /// naming the deny rules that refuse some of it on the destinations they select.
    fn add_folded(&mut self, keys: &KeySets, source: &Arc<Party>, any: u32) {
        let only_any = KeySets {
            src: keys.src.clone(),
            dst: Box::new([any]),
        };
        let mut rules = std::mem::take(&mut self.rules);
        self.policy.rules_between(&only_any, &only_any, &mut rules);
        let mut carving: Vec<String> = keys
            .src
            .iter()
            .flat_map(|s| self.deny_dsts[*s as usize].iter())
            .filter_map(|d| self.policy.by_dst[*d as usize].as_ref())
            .flat_map(|bucket| keys.src.iter().filter_map(|s| bucket.rules_for(*s)))
            .flatten()
            .map(|r| &self.policy.rules[*r as usize])
            .filter(|r| r.effect == Effect::Deny && !r.dry_run)
            .map(|r| r.name.clone())
            .collect();
        carving.sort_unstable();
        carving.dedup();
        for g in grants(self.policy, &rules, &self.all_paths) {
            let mut deny_rules = g.deny_rules;
            deny_rules.extend(carving.iter().cloned());
            deny_rules.sort_unstable();
            deny_rules.dedup();
            self.edges.push(Edge {
                source: source.clone(),
                destination: self.any_destination.clone(),
                methods: g.methods,
                paths: g.paths,
                except: g.except,
                except_lenient: g.except_lenient,
                allow_rules: g.allow_rules,
                deny_rules,
                dry_run_rules: g.dry_run_rules,
            });
        }
        self.rules = rules;
    }
}

fn all_paths() -> PathPattern {
    // Invariant: `/**` is a valid path pattern.
    PathPattern::parse("/**").unwrap_or_else(|_| unreachable!("`/**` parses"))
}

/// What one group of methods may do between two classes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    methods: Methods,
    paths: Vec<Arc<PathPattern>>,
    except: Vec<Arc<PathPattern>>,
    except_lenient: Vec<Arc<PathPattern>>,
    allow_rules: Vec<String>,
    deny_rules: Vec<String>,
    dry_run_rules: Vec<String>,
}

/// The exact grants of a set of rules: one per group of methods the rules treat alike.
fn grants(policy: &CompiledPolicy, rules: &[u32], all: &Arc<PathPattern>) -> Vec<Grant> {
    // Expired rules match nothing (PRODUCT.md §10): they grant and carve nothing either.
    let rules: Vec<&Rule> = rules
        .iter()
        .map(|r| &policy.rules[*r as usize])
        .filter(|r| !r.expired)
        .collect();
    if !rules.iter().any(|r| r.effect == Effect::Allow) {
        return Vec::new();
    }
    let mut named: Vec<&str> = rules
        .iter()
        .filter_map(|r| r.methods.as_ref())
        .flat_map(|m| m.names())
        .collect();
    named.sort_unstable();
    named.dedup();
    // Each named method, then "any other method" (which only rules without `methods` admit).
    let mut groups: Vec<(Grant, Vec<Option<&str>>)> = Vec::new();
    for atom in named.iter().copied().map(Some).chain([None]) {
        let Some(grant) = grant_for(&rules, atom, all) else {
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == grant) {
            Some((_, atoms)) => atoms.push(atom),
            None => groups.push((grant, vec![atom])),
        }
    }
    groups
        .into_iter()
        .map(|(mut grant, atoms)| {
            grant.methods = if atoms.contains(&None) {
                let missing = named.iter().filter(|m| !atoms.contains(&Some(**m)));
                Methods::AllBut(missing.map(|m| (*m).to_owned()).collect())
            } else {
                Methods::Only(atoms.iter().flatten().map(|m| (*m).to_owned()).collect())
            };
            grant
        })
        .collect()
}

/// The grant for requests of one method (`None`: a method no rule names), if any.
fn grant_for(rules: &[&Rule], atom: Option<&str>, all: &Arc<PathPattern>) -> Option<Grant> {
    let admits = |r: &&&Rule| match (&r.methods, atom) {
        (None, _) => true,
        (Some(m), Some(name)) => m.contains(MethodBit::of(name), name),
        (Some(_), None) => false,
    };
    let of = |effect: Effect, dry: bool| -> Vec<&Rule> {
        rules
            .iter()
            .filter(|r| r.effect == effect && (effect == Effect::Allow || r.dry_run == dry))
            .filter(admits)
            .copied()
            .collect()
    };
    let (allow, deny, dry) = (
        of(Effect::Allow, false),
        of(Effect::Deny, false),
        of(Effect::Deny, true),
    );
    if allow.is_empty() {
        return None;
    }
    let paths_of = |r: &Rule| -> Vec<Arc<PathPattern>> {
        r.paths.clone().unwrap_or_else(|| vec![all.clone()])
    };
    let carved: Vec<Arc<PathPattern>> = unique(deny.iter().flat_map(|r| paths_of(r)));
    let carved_refs: Vec<&PathPattern> = carved.iter().map(|p| &**p).collect();
    // Allowed patterns that deny rules leave something of, minus those another one covers.
    let open: Vec<Arc<PathPattern>> = unique(allow.iter().flat_map(|r| paths_of(r)))
        .into_iter()
        .filter(|p| region::remains(p, &carved_refs))
        .collect();
    let paths: Vec<Arc<PathPattern>> = open
        .iter()
        .filter(|p| {
            !open
                .iter()
                .any(|q| q.as_str() != p.as_str() && !region::remains(p, &[&**q]))
        })
        .cloned()
        .collect();
    if paths.is_empty() {
        return None;
    }
    let touches = |e: &PathPattern| paths.iter().any(|p| region::overlaps(p, e));
    let (except, except_lenient): (Vec<_>, Vec<_>) =
        carved.iter().cloned().partition(|e| touches(e));
    let names = |rs: Vec<&Rule>| -> Vec<String> {
        let mut out: Vec<String> = rs.into_iter().map(|r| r.name.clone()).collect();
        out.sort_unstable();
        out
    };
    let allow_rules = names(
        allow
            .into_iter()
            .filter(|r| paths_of(r).iter().any(|p| region::remains(p, &carved_refs)))
            .collect(),
    );
    let deny_rules = names(
        deny.into_iter()
            .filter(|r| paths_of(r).iter().any(|e| touches(e)))
            .collect(),
    );
    let dry_run_rules = names(
        dry.into_iter()
            .filter(|r| {
                paths_of(r).iter().any(|d| {
                    paths
                        .iter()
                        .any(|p| region::exists(&[&**p, &**d], &carved_refs))
                })
            })
            .collect(),
    );
    Some(Grant {
        methods: Methods::AllBut(Vec::new()),
        paths,
        except,
        except_lenient,
        allow_rules,
        deny_rules,
        dry_run_rules,
    })
}

/// Patterns de-duplicated by text, sorted by text.
fn unique(patterns: impl Iterator<Item = Arc<PathPattern>>) -> Vec<Arc<PathPattern>> {
    let mut out: Vec<Arc<PathPattern>> = patterns.collect();
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup_by(|a, b| a.as_str() == b.as_str());
    out
}

impl Serialize for Party {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

/// Path patterns as their texts.
struct Texts<'a>(&'a [Arc<PathPattern>]);

impl Serialize for Texts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| p.as_str()))
    }
}

/// The JSON shape of PRODUCT.md §9: `methods` is a list, `["*"]` for any method (then
/// `except_methods` lists the ones left out, when some are); `except_lenient` and
/// `dry_run_rules` appear only when not empty.
impl Serialize for Edge {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("source", &self.source.name)?;
        map.serialize_entry("destination", &self.destination.name)?;
        map.serialize_entry("source_segments", &self.source.segments)?;
        map.serialize_entry("destination_segments", &self.destination.segments)?;
        match &self.methods {
            Methods::Only(list) => map.serialize_entry("methods", list)?,
            Methods::AllBut(list) => {
                map.serialize_entry("methods", &["*"])?;
                if !list.is_empty() {
                    map.serialize_entry("except_methods", list)?;
                }
            }
        }
        map.serialize_entry("paths", &Texts(&self.paths))?;
        map.serialize_entry("except", &Texts(&self.except))?;
        if !self.except_lenient.is_empty() {
            map.serialize_entry("except_lenient", &Texts(&self.except_lenient))?;
        }
        map.serialize_entry("allow_rules", &self.allow_rules)?;
        map.serialize_entry("deny_rules", &self.deny_rules)?;
        if !self.dry_run_rules.is_empty() {
            map.serialize_entry("dry_run_rules", &self.dry_run_rules)?;
        }
        map.end()
    }
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
#[path = "reach_tests.rs"]
mod tests;

impl CompiledPolicy {
    /// The reach between two selectors given as text (`*` for an omitted side): what
    /// `policy reach --from FROM --to TO` and the admin `/reach` endpoint answer.
    ///
    /// # Errors
    /// The message to show: a bad selector, prefixed by its side (`from …:` or `to …:`), or
    /// [`ReachError`]'s text.
    pub fn reach_texts(&self, from: &str, to: &str) -> Result<Reach, String> {
        let parse = |side: &str, text: &str| {
            Selector::parse(self, text).map_err(|e| format!("{side} {text}: {e}"))
        };
        let (f, t) = (parse("from", from)?, parse("to", to)?);
        self.reach((from, &f), (to, &t)).map_err(|e| e.to_string())
    }
}
