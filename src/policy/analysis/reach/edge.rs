//! One edge of a reach answer (docs/blast-radius.md): the parties (identity classes), the methods,
//! the allowed path patterns minus deny carve-outs, and the rules behind it; its exact reading
//! ([`Edge::covers`]), its one-line text and its JSON shape.

use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::path::{NormalizedPath, upstream_variant};
use crate::policy::pattern::{PathPattern, trim_trailing_slash};

/// One side of an edge: an identity class.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Party {
    /// Its segment names joined with `+`, [`UNSEGMENTED`](super::UNSEGMENTED), or the queried ID.
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

/// Requests a source class may make to a destination class (docs/blast-radius.md).
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

/// The JSON shape of docs/blast-radius.md: `methods` is a list, `["*"]` for any method (then
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
