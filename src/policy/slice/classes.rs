//! The compact part of a slice (docs/fleet.md "What a slice holds"): the segments present
//! only because a label selector facing any peer selects them are not copied one by one.
//! Each is reduced to the labels of those selectors it satisfies (its *class*), and one
//! synthesized segment per class lists the identity patterns of all of them.
//!
//! Why a peer is classified exactly as before: a segment is in a kept group exactly when it
//! carries all the group's labels. For a group facing any peer, a reduced segment keeps all
//! of them when it was in the group, and lacks one when it was not; a class has the labels of
//! its segments, so an identity falls in the same such groups. Groups used only on a side
//! facing a member classify members, whose segments are kept as written. No rule, `revoked:`
//! scope or test names a reduced segment (those are kept as written), so its own key matched
//! nothing; the trie files a class's patterns as it filed its segments' patterns, exact IDs
//! and overlaps alike.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use rustc_hash::FxHashSet;

use crate::policy::source::{Location, SegmentDoc, Spanned};
use crate::policy::validate::Parts;

/// A segment a slice synthesizes: the identities of the segments of one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSegment {
    /// `slice.<key>.<value>…` for its labels, or `slice.class-<n>` when those characters
    /// are not a valid name or the name is taken.
    pub name: String,
    /// The labels of its class: those of the selectors facing any peer it satisfies.
    pub labels: BTreeMap<String, String>,
    /// The identity patterns of its segments, sorted, each once.
    pub identities: Vec<String>,
}

/// The classes of the segments not kept as written (`written`) that a group facing any peer
/// (`full`) selects, by name. A class of one segment whose labels are exactly the class's
/// (a segment a slice synthesized, read back) is that segment kept as written instead: the
/// same identities and labels under its own name, so the slice of a slice is itself.
pub(super) fn of(parts: &Parts, written: &mut [bool], full: &[bool]) -> Vec<ClassSegment> {
    let mut labels: Vec<BTreeMap<&str, &str>> = vec![BTreeMap::new(); parts.segments.len()];
    for (group, _) in parts.groups.iter().zip(full).filter(|(_, f)| **f) {
        for &s in &group.members {
            if !written[s as usize] {
                let l = &mut labels[s as usize];
                l.extend(group.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
        }
    }
    let mut classes: BTreeMap<BTreeMap<&str, &str>, Vec<usize>> = BTreeMap::new();
    for (s, class) in labels.into_iter().enumerate() {
        if !class.is_empty() {
            classes.entry(class).or_default().push(s);
        }
    }
    classes.retain(|class, members| {
        let own = |s: usize| parts.segments[s].labels.iter().map(|(k, v)| (&**k, &**v));
        match members.as_slice() {
            [s] if own(*s).eq(class.iter().map(|(k, v)| (*k, *v))) => {
                written[*s] = true;
                false
            }
            _ => true,
        }
    });
    let mut taken: FxHashSet<String> = parts.segments.iter().map(|s| s.name.clone()).collect();
    let mut next = 0usize;
    let mut out = Vec::with_capacity(classes.len());
    for (labels, members) in classes {
        let name = name_of(&labels)
            .filter(|n| !taken.contains(n))
            .unwrap_or_else(|| {
                loop {
                    next += 1;
                    let n = format!("slice.class-{next}");
                    if !taken.contains(&n) {
                        break n;
                    }
                }
            });
        taken.insert(name.clone());
        let identities: BTreeSet<String> = members
            .iter()
            .flat_map(|&s| parts.segments[s].identities.iter().map(ToString::to_string))
            .collect();
        out.push(ClassSegment {
            name,
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            identities: identities.into_iter().collect(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `slice.k1.v1.k2.v2` when that is a valid segment name.
fn name_of(labels: &BTreeMap<&str, &str>) -> Option<String> {
    let mut name = "slice".to_owned();
    for (k, v) in labels {
        let _ = write!(name, ".{k}.{v}");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    (name.len() <= 253 && name.chars().all(ok)).then_some(name)
}

impl ClassSegment {
    /// The segment as parsed source (no location: it was never written).
    pub(super) fn doc(&self) -> (Spanned<String>, SegmentDoc) {
        let unknown = |value: String| Spanned {
            value,
            referenced: Location::default(),
        };
        let doc = SegmentDoc {
            identities: self.identities.iter().cloned().map(unknown).collect(),
            labels: self.labels.clone(),
            description: None,
        };
        (unknown(self.name.clone()), doc)
    }

    /// The segment as a `segments:` entry (two-space indent): its labels, then its
    /// identities as one flow list wrapped at about 100 columns, every string quoted.
    pub fn yaml(&self) -> String {
        let mut out = format!("  {}:\n    labels: {{ ", self.name);
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
            .collect();
        out.push_str(&labels.join(", "));
        out.push_str(" }\n    identities: [");
        let mut column = 17;
        for (i, id) in self.identities.iter().enumerate() {
            let text = quote(id);
            if i > 0 {
                out.push(',');
                // Room for the separator and what ends the line (`,` or `]`).
                if column + text.len() + 3 > 100 {
                    out.push_str("\n      ");
                    column = 6;
                } else {
                    out.push(' ');
                    column += 2;
                }
            }
            column += text.len();
            out.push_str(&text);
        }
        out.push_str("]\n");
        out
    }
}

/// A YAML double-quoted scalar of `text`: printable ASCII as is (`"` and `\` escaped),
/// everything else as a `\u`/`\U` escape, so no character can change how it parses.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}
