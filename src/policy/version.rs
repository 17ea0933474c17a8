//! Policy version = SHA-256 of the canonical content (docs/operations.md `/policy`, §3).
//! Canonical: segments and rules by name, lists sorted, patterns re-printed — so file
//! layout, key order, comments and `tests:` do not change the version; behaviour does.
//! The content is streamed into the digest as length-prefixed fields (no ambiguity, no
//! intermediate document: a 50k-rule policy hashes in a few milliseconds).

use ring::digest::{Context, SHA256, digest};

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
    let mut buf = String::new();
    canon.head(segments, rules.len(), &mut buf);
    // Label selectors by canonical text, computed once; group ids follow file order.
    let mut group_text = Vec::new();
    sync_group_texts(groups, &mut group_text);
    for r in rules {
        write_rule(&mut canon.0, r, segments, &group_text);
    }
    canon.finish(revoked, &mut buf)
}

/// [`version_of`] with the rules given as what [`write_rule`] wrote for each, in name order:
/// the same digest, for a caller that never holds the validated rules together
/// (`slice/stream.rs`).
pub(super) fn version_of_written<'r>(
    segments: &[Segment],
    rules: usize,
    written: impl Iterator<Item = &'r [u8]>,
    revoked: &[IdentityPattern],
) -> String {
    // Hashed as it goes: the rules' content is never copied into one buffer.
    let mut canon = Canon(Vec::with_capacity(64 * segments.len()));
    let mut buf = String::new();
    canon.head(segments, rules, &mut buf);
    let mut hash = Context::new(&SHA256);
    hash.update(&canon.0);
    written.for_each(|bytes| hash.update(bytes));
    canon.0.clear();
    canon.list("revoked", 0);
    canon.patterns(revoked, &mut buf);
    hash.update(&canon.0);
    hex(hash.finish().as_ref())
}

/// Extends `texts` with the canonical text of every group not in it yet (ids are indexes).
pub(super) fn sync_group_texts(groups: &[Group], texts: &mut Vec<String>) {
    let known = texts.len();
    texts.extend(groups.iter().skip(known).map(|g| labels(&g.labels)));
}

/// Appends the canonical content of one rule to `out` (`group_text`: [`sync_group_texts`]
/// of the groups its selectors name). It starts with the rule's name as a field: 8 bytes of
/// length, then the name.
pub(super) fn write_rule(out: &mut Vec<u8>, r: &Rule, segments: &[Segment], group_text: &[String]) {
    let canon = &mut Canon(std::mem::take(out));
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
        selectors(canon, side, segments, group_text);
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
    *out = std::mem::take(&mut canon.0);
}

/// The name [`write_rule`] wrote first in `written` (empty if it is too short).
pub(super) fn written_name(written: &[u8]) -> &[u8] {
    let len = written
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes);
    let end = usize::try_from(len).map_or(0, |l| l.saturating_add(8));
    written.get(8..end).unwrap_or_default()
}

/// `sha256:` and the first 16 hex digits of `digest`.
fn hex(digest: &[u8]) -> String {
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
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
    /// The segments, then the header of the list of `rules` rules.
    fn head(&mut self, segments: &[Segment], rules: usize, buf: &mut String) {
        self.list("segments", segments.len());
        for s in segments {
            self.field(&s.name);
            self.patterns(&s.identities, buf);
            self.sorted(s.labels.iter().map(|(k, v)| label(k, v)));
        }
        self.list("rules", rules);
    }

    /// The revoked patterns in force, then the digest.
    fn finish(mut self, revoked: &[IdentityPattern], buf: &mut String) -> String {
        self.list("revoked", 0);
        self.patterns(revoked, buf);
        hex(digest(&SHA256, &self.0).as_ref())
    }

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
