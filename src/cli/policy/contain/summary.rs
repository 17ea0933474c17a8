//! What `policy contain` and `policy release` print: the containment, the identity classes
//! it hits and the reach it removes or restores, as text lines or one `--json` object.

use serde_json::json;

use crate::containment::{Containment, ContainmentId, ReachChange, Scope, rfc3339};
use crate::policy::CompiledPolicy;
use crate::policy::analysis::{Diff, Layout, UNSEGMENTED, changes_text};

/// What `contain` prints.
pub(super) struct ContainReport<'a> {
    pub(super) containment: &'a Containment,
    pub(super) dir: &'a str,
    pub(super) file: &'a str,
    pub(super) segments: Vec<String>,
    pub(super) change: &'a ReachChange,
}

impl ContainReport<'_> {
    pub(super) fn text(&self) -> String {
        let c = self.containment;
        let until = c.until.map_or("until released".to_owned(), |u| {
            format!("until {}", rfc3339(u))
        });
        let mut out = format!("contained {}: wrote {}\n", c.id.as_str(), self.file);
        out += &format!(
            "scope:    {} {} ({}; since {}, {until})\n",
            c.scope.kind(),
            c.scope.selector_text(),
            c.reason,
            rfc3339(c.since)
        );
        if !self.segments.is_empty() {
            out += &format!("segments: {}\n", self.segments.join(", "));
        }
        out += &format!("hits:     {}\n", classes(&self.change.revoked_after));
        if !self.change.revoked_before.is_empty() {
            let already = classes(&self.change.revoked_before);
            out += &format!("already revoked before: {already}\n");
        }
        out += &changes_text(&self.change.diff, Layout::Ledger { word: "removed" });
        out += &format!(
            "policy:   {} -> {}\n",
            self.change.diff.old_version, self.change.diff.new_version
        );
        out += &format!(
            "every sidecar watching this folder applies it within 2 s; release with: segward \
             policy release {} {}\n",
            self.dir,
            c.id.as_str()
        );
        out
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let c = self.containment;
        let scope = match &c.scope {
            Scope::Identity(id) => json!({"identity": id}),
            Scope::Segment(name) => json!({"segment": name}),
            Scope::Labels(labels) => json!({"labels": labels}),
        };
        json!({
            "containment_id": c.id.as_str(),
            "file": self.file,
            "scope": scope,
            "selector": c.scope.selector_text(),
            "reason": c.reason,
            "since": rfc3339(c.since),
            "until": c.until.map(rfc3339),
            "segments": self.segments,
            "hits": self.change.revoked_after,
            "already_revoked": self.change.revoked_before,
            "removed": changes_json(&self.change.diff),
            "old_version": self.change.diff.old_version,
            "new_version": self.change.diff.new_version,
            "release": format!("segward policy release {} {}", self.dir, c.id.as_str()),
        })
    }
}

/// What `release` prints.
pub(super) struct ReleaseReport<'a> {
    pub(super) id: &'a ContainmentId,
    pub(super) file: &'a str,
    pub(super) after: &'a CompiledPolicy,
    pub(super) restored: Option<&'a ReachChange>,
}

impl ReleaseReport<'_> {
    pub(super) fn text(&self) -> String {
        let mut out = format!("released {}: removed {}\n", self.id.as_str(), self.file);
        match self.restored {
            Some(change) => {
                out += &changes_text(&change.diff, Layout::Ledger { word: "restored" });
                out += &format!(
                    "policy:   {} -> {}\n",
                    change.diff.old_version, change.diff.new_version
                );
            }
            None => {
                out += &format!(
                    "restored: unknown (the policy with it was invalid); policy now {}\n",
                    self.after.version()
                )
            }
        }
        out.push_str("every sidecar watching this folder applies it within 2 s\n");
        out
    }

    pub(super) fn json(&self) -> serde_json::Value {
        json!({
            "released": self.id.as_str(),
            "file": self.file,
            "restored": self.restored.map(|c| changes_json(&c.diff)),
            "old_version": self.restored.map(|c| c.diff.old_version.clone()),
            "new_version": self.after.version(),
        })
    }
}

/// Class names as an operator reads them.
fn classes(names: &[String]) -> String {
    if names.is_empty() {
        return "no identity class the policy knows".to_owned();
    }
    let readable: Vec<&str> = names
        .iter()
        .map(|n| match n.as_str() {
            UNSEGMENTED => "identities in no segment",
            n => n,
        })
        .collect();
    readable.join(", ")
}

/// The changes as `policy diff --json` writes them.
fn changes_json(d: &Diff) -> serde_json::Value {
    serde_json::to_value(&d.changes).unwrap_or_default()
}
