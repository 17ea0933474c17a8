//! Policy version = SHA-256 of the canonical content (docs/operations.md `/policy`, §3).
//! Canonical: segments and rules by name, lists sorted, patterns re-printed — so file
//! layout, key order, comments and `tests:` do not change the version; behaviour does.
//! The content is streamed into the digest as length-prefixed fields (no ambiguity, no
//! intermediate document: a 50k-rule policy hashes in a few milliseconds).

use ring::digest::{SHA256, digest};

use super::compiled::{Group, Rule, Segment, Target};
use super::pattern::IdentityPattern;
use super::source::Effect;

/// `sha256:` and the first 16 hex digits of the digest of the canonical content.
pub fn version_of(
    segments: &[Segment],
    groups: &[Group],
    rules: &[Rule],
    revoked: &[IdentityPattern],
) -> String {
    let mut canon = Canon(Vec::with_capacity(64 * (segments.len() + rules.len())));
    canon.list("segments", segments.len());
    let mut buf = String::new();
    for s in segments {
        canon.field(&s.name);
        canon.patterns(&s.identities, &mut buf);
        canon.sorted(s.labels.iter().map(|(k, v)| label(k, v)));
    }
    // Label selectors by canonical text, computed once; group ids follow file order.
    let group_text: Vec<String> = groups.iter().map(|g| labels(&g.labels)).collect();
    canon.list("rules", rules.len());
    for r in rules {
        canon.field(&r.name);
        canon.field(if r.effect == Effect::Deny {
            "deny"
        } else {
            "allow"
        });
        canon.field(if r.dry_run { "dry-run" } else { "enforce" });
        // Only when set, so that the versions of policies without tripwires are unchanged.
        if r.tripwire {
            canon.field("tripwire");
        }
        // An exception's expiry is behaviour; whether it has passed is this state's.
        if let Some(t) = r.expires {
            canon.field(&format!("expires:{t}"));
            canon.field(if r.expired { "expired" } else { "in-force" });
        }
        for side in [&r.from, &r.to] {
            selectors(&mut canon, side, segments, &group_text);
        }
        match &r.methods {
            Some(m) => m.names().iter().for_each(|name| canon.field(name)),
            None => canon.field("all-methods"),
        }
        // Patterns are stored sorted by content, so their order is already canonical.
        r.paths
            .iter()
            .flatten()
            .for_each(|p| canon.field(p.as_str()));
        if r.paths.is_none() {
            canon.field("all-paths");
        }
    }
    canon.list("revoked", 0);
    canon.patterns(revoked, &mut buf);
    let digest = digest(&SHA256, &canon.0);
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// One side of a rule: `"*"`, then segment names (ids are in name order), then label
/// selectors by text. Names and label texts cannot collide (`:` is not allowed in names).
fn selectors(canon: &mut Canon, side: &[Target], segments: &[Segment], group_text: &[String]) {
    canon.list("", side.len());
    let mut groups: Vec<&str> = Vec::new();
    for t in side {
        match *t {
            Target::Any => canon.field("*"),
            Target::Segment(s) => canon.field(&segments[s as usize].name),
            Target::Group(g) => groups.push(&group_text[g as usize]),
        }
    }
    groups.sort_unstable();
    groups.iter().for_each(|g| canon.field(g));
}

fn labels(map: &std::collections::BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| label(k, v)).collect()
}

fn label(k: &str, v: &str) -> String {
    format!("{}:{k}{}:{v}", k.len(), v.len())
}

/// The canonical content, collected whole and hashed once (a few MB at 50k rules).
struct Canon(Vec<u8>);

impl Canon {
    fn field(&mut self, text: &str) {
        self.0.extend_from_slice(&(text.len() as u64).to_le_bytes());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn list(&mut self, name: &str, len: usize) {
        self.field(name);
        self.0.extend_from_slice(&(len as u64).to_le_bytes());
    }

    /// [`Self::sorted`] of the patterns' texts, without an owned text per pattern when
    /// there is nothing to sort (most segments name one identity).
    fn patterns(&mut self, patterns: &[IdentityPattern], buf: &mut String) {
        if patterns.len() > 1 {
            self.sorted(patterns.iter().map(|p| {
                let mut text = String::with_capacity(64);
                p.write_to(&mut text);
                text
            }));
            return;
        }
        self.list("", patterns.len());
        for p in patterns {
            buf.clear();
            p.write_to(buf);
            self.field(buf);
        }
    }

    fn sorted(&mut self, items: impl Iterator<Item = String>) {
        let mut items: Vec<String> = items.collect();
        items.sort_unstable();
        self.list("", items.len());
        items.iter().for_each(|i| self.field(i));
    }
}
