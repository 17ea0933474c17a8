//! Policy version = SHA-256 of the canonical content (PRODUCT.md §6 `/policy`, §3).
//! Canonical: segments and rules by name, lists sorted, patterns re-printed — so file
//! layout, key order, comments and `tests:` do not change the version; behaviour does.

use serde_json::{Value, json};

use super::compile::{Group, Rule, Segment, Target};
use super::pattern::IdentityPattern;
use super::source::Effect;

/// `sha256:` and the first 16 hex digits of the digest of the canonical content.
pub fn version_of(
    segments: &[Segment],
    groups: &[Group],
    rules: &[Rule],
    revoked: &[IdentityPattern],
) -> String {
    let target = |t: &Target| match t {
        Target::Any => json!("*"),
        Target::Segment(s) => json!(segments[*s as usize].name),
        Target::Group(g) => json!(groups[*g as usize].labels),
    };
    let segments: Vec<Value> = segments
        .iter()
        .map(|s| {
            let mut ids: Vec<String> = s.identities.iter().map(ToString::to_string).collect();
            ids.sort();
            json!({ "name": s.name, "identities": ids, "labels": s.labels })
        })
        .collect();
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "effect": if r.effect == Effect::Deny { "deny" } else { "allow" },
                "dry_run": r.dry_run,
                "from": sorted(r.from.iter().map(target)),
                "to": sorted(r.to.iter().map(target)),
                "methods": r.methods.as_ref().map(|m| m.names()),
                "paths": r.paths.as_ref().map(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>()),
            })
        })
        .collect();
    let revoked: Vec<String> = revoked.iter().map(ToString::to_string).collect();
    let canonical = json!({ "segments": segments, "rules": rules, "revoked": revoked });
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.to_string().as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Selector lists in a fixed order, whatever order the files gave them.
fn sorted(values: impl Iterator<Item = Value>) -> Vec<String> {
    let mut out: Vec<String> = values.map(|v| v.to_string()).collect();
    out.sort();
    out
}
