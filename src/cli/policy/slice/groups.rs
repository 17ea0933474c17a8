//! The scopes `policy slice` cuts (docs/fleet.md "Writing slices"): a `--for` selector's
//! identities, or the groups of `--per namespace|segment|LABEL`, and each group's folder name
//! (safe as a path component and in a ConfigMap name).

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};

use crate::policy::pattern::IdentityPattern;
use crate::policy::{CompiledPolicy, Scope, Selector};

/// The group of identities with no `ns/<name>` in their IDs.
pub const OTHER: &str = "other";
/// The group of segments without the `--per` label.
pub const UNLABELLED: &str = "unlabelled";

/// The scope a (non-`*`) selector stands for: an ID, a pattern, or the identity patterns of
/// the segments it names.
pub fn scope_of(policy: &CompiledPolicy, selector: &Selector) -> Scope {
    match selector {
        Selector::Id(id) => Scope::identity(id.clone()),
        Selector::Pattern(p) => Scope::pattern(p.clone()),
        Selector::Segment(s) => segments_scope(policy, &[*s]),
        Selector::Labels(_, members) => segments_scope(policy, members),
        Selector::Any => Scope::default(),
    }
}

/// The union of the identity patterns of `segments`.
fn segments_scope(policy: &CompiledPolicy, segments: &[u32]) -> Scope {
    segments
        .iter()
        .filter_map(|&s| policy.segments().get(s as usize))
        .flat_map(|s| &s.identities)
        .fold(Scope::default(), |scope, p| {
            scope.and(Scope::pattern(p.clone()))
        })
}

/// The groups of `--per per`, by name, each with its scope.
///
/// # Errors
/// A label that no segment carries.
pub fn groups(policy: &CompiledPolicy, per: &str) -> Result<BTreeMap<String, Scope>, String> {
    let mut groups: BTreeMap<String, Scope> = BTreeMap::new();
    let mut add = |name: &str, pattern: &IdentityPattern| {
        let scope = groups.entry(name.to_owned()).or_default();
        *scope = std::mem::take(scope).and(Scope::pattern(pattern.clone()));
    };
    for segment in policy.segments() {
        for pattern in &segment.identities {
            match per {
                "namespace" => add(&namespace(pattern).unwrap_or(OTHER.to_owned()), pattern),
                "segment" => add(&segment.name, pattern),
                label => add(
                    segment.labels.get(label).map_or(UNLABELLED, String::as_str),
                    pattern,
                ),
            }
        }
    }
    let labelled = |n: &String| n != UNLABELLED;
    if !matches!(per, "namespace" | "segment") && !groups.keys().any(labelled) {
        return Err(format!(
            "no segment carries the label `{}` (give namespace, segment or a label key)",
            per.escape_debug()
        ));
    }
    Ok(groups)
}

/// The namespace of a Kubernetes-style ID pattern: the literal path segment after `ns/`.
fn namespace(pattern: &IdentityPattern) -> Option<String> {
    let text = pattern.to_string();
    let path = text.strip_prefix("spiffe://")?.split_once('/')?.1;
    let parts: Vec<&str> = path.split('/').collect();
    parts
        .windows(2)
        .find(|w| w[0] == "ns")
        .map(|w| w[1])
        .filter(|ns| !ns.is_empty() && !ns.contains('*'))
        .map(str::to_owned)
}

/// How a header names a group's scope: `namespace prod`, `segment web`, `team=payments`.
pub fn describe(per: &str, group: &str) -> String {
    match per {
        "namespace" | "segment" => format!("{per} {group}"),
        label => format!("{label}={group}"),
    }
}

/// A group's folder name: the name itself when it is lower-case letters, digits, `-` and
/// `.` (not leading) and short; otherwise those characters of it, with a digest of the name
/// appended so distinct names stay distinct.
pub fn dir_name(group: &str) -> String {
    let safe = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let clean = !group.is_empty()
        && group.len() <= 200
        && group.chars().all(safe)
        && !group.starts_with('.');
    if clean {
        return group.to_owned();
    }
    let mut kept: String = group
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if safe(c) { c } else { '-' })
        .take(200)
        .collect();
    kept = kept.trim_start_matches('.').to_owned();
    let hash = digest(&SHA256, group.as_bytes());
    let hex: String = hash.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if kept.is_empty() {
        format!("group-{hex}")
    } else {
        format!("{kept}-{hex}")
    }
}
