//! The containment file (docs/runbook.md): its id (`c-20261203-1330-7f3a`), its name
//! (`contain-<ID>.yaml`), its YAML — a comment header and a `revoked:` list of one
//! `{ identity | segment | labels, reason, since, until, suspend_tests }` entry — and the
//! scopes read back from such a file with the policy's own parse of `revoked:`. No I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use time::OffsetDateTime;

use super::ContainError;
use crate::policy::load::parse_doc;
use crate::policy::source::{RevokedDoc, RevokedScopeDoc};

/// A containment's id: `c-` + UTC date and minute + 4 hex digits, e.g. `c-20261203-1330-7f3a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainmentId(String);

impl ContainmentId {
    /// The id of a containment written at `now`, with two random bytes for uniqueness.
    pub fn new(now: OffsetDateTime, random: [u8; 2]) -> Self {
        let t = now.to_offset(time::UtcOffset::UTC);
        Self(format!(
            "c-{:04}{:02}{:02}-{:02}{:02}-{:02x}{:02x}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            random[0],
            random[1]
        ))
    }

    /// Reads an id as `policy release` is given it; anything else (a path, a file name, `..`)
    /// is refused, so the file it names is always directly inside the policy folder.
    ///
    /// # Errors
    /// [`ContainError::NotAnId`], with a hint when given a file name.
    pub fn parse(text: &str) -> Result<Self, ContainError> {
        let b = text.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let hex = |r: std::ops::Range<usize>| {
            b[r].iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        };
        let shaped = b.len() == 20
            && b.starts_with(b"c-")
            && b[10] == b'-'
            && b[15] == b'-'
            && digits(2..10)
            && digits(11..15)
            && hex(16..20);
        if shaped {
            return Ok(Self(text.to_owned()));
        }
        let hint = match text
            .strip_prefix("contain-")
            .and_then(|t| t.strip_suffix(".yaml"))
        {
            Some(id) => format!("; give the id alone: {id}"),
            None => String::new(),
        };
        Err(ContainError::NotAnId(text.to_owned(), hint))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `contain-<ID>.yaml`.
    pub fn file_name(&self) -> String {
        format!("contain-{}.yaml", self.0)
    }
}

/// What a containment revokes, as the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A SPIFFE ID or ID pattern.
    Identity(String),
    /// Every identity of one segment.
    Segment(String),
    /// Every identity of the segments carrying all these labels.
    Labels(BTreeMap<String, String>),
}

impl Scope {
    /// The scope as a `policy reach` selector.
    pub fn selector_text(&self) -> String {
        match self {
            Self::Identity(id) => id.clone(),
            Self::Segment(name) => name.clone(),
            Self::Labels(labels) => labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// `identity`, `segment` or `labels`: the entry's key.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Identity(_) => "identity",
            Self::Segment(_) => "segment",
            Self::Labels(_) => "labels",
        }
    }

    /// The scope as one `revoked:` entry's keys, in YAML flow style.
    fn yaml(&self) -> String {
        match self {
            Self::Identity(id) => format!("identity: {}", quote(id)),
            Self::Segment(name) => format!("segment: {}", quote(name)),
            Self::Labels(labels) => {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
                    .collect();
                format!("labels: {{ {} }}", pairs.join(", "))
            }
        }
    }
}

/// One containment: what it revokes, why, from when, until when, and who wrote it.
#[derive(Debug, Clone)]
pub struct Containment {
    /// Its id, which names its file.
    pub id: ContainmentId,
    /// What it revokes.
    pub scope: Scope,
    /// Why (an incident or ticket).
    pub reason: String,
    /// When it was written (UTC, whole seconds).
    pub since: OffsetDateTime,
    /// When it lifts itself; `None`: when released.
    pub until: Option<OffsetDateTime>,
    /// The program that wrote it, for the header: [`Containment::POLICY_CONTAIN`] or another.
    pub writer: &'static str,
    /// `user@host`, for the header; `unknown` parts when the environment does not say.
    pub author: String,
    /// Suspend the `tests:` whose source it revokes while it is in force.
    pub suspend_tests: bool,
}

impl Containment {
    /// The writer `segward policy contain` names in the header.
    pub const POLICY_CONTAIN: &'static str = "segward policy contain";

    /// The file's text; `dir` is the policy folder as the operator named it (for the release
    /// command in the header).
    pub fn to_yaml(&self, dir: &str) -> String {
        let id = self.id.as_str();
        let mut out = format!(
            "# Containment {id}, written by `{}` ({}) at {}.\n",
            one_line(self.writer),
            one_line(&self.author),
            rfc3339(self.since)
        );
        out.push_str("# Every sidecar watching this folder applies it within 2 s.\n");
        let _ = writeln!(
            out,
            "# Release it with: segward policy release {} {id}",
            one_line(dir)
        );
        out.push_str("# (which checks the rest of the policy first), or by deleting this file.\n");
        let mut entry = format!(
            "{}, reason: {}, since: {}",
            self.scope.yaml(),
            quote(&self.reason),
            rfc3339(self.since)
        );
        if let Some(until) = self.until {
            let _ = write!(entry, ", until: {}", rfc3339(until));
        }
        if self.suspend_tests {
            entry.push_str(", suspend_tests: true");
        }
        let _ = write!(out, "revoked:\n  - {{ {entry} }}\n");
        out
    }
}

/// `2026-12-03T13:30:00Z`: UTC, whole seconds (sub-second digits are dropped).
pub fn rfc3339(t: OffsetDateTime) -> String {
    crate::policy::format_time(t.unix_timestamp())
}

/// The scopes a containment file revokes, as `policy reach` selectors: `identity`, `segment`
/// and `labels` entries and plain strings, read as the policy reads `revoked:`. `None` when
/// the file (perhaps edited by hand) is not in that shape; the caller then compares the
/// whole reach.
pub fn scopes_in(text: &str) -> Option<Vec<String>> {
    let doc = parse_doc("", text).ok()?;
    let scope = |entry: &RevokedDoc| match entry {
        RevokedDoc::Plain(id) => Some(id.clone()),
        RevokedDoc::Entry(doc) => match doc.scope().ok()? {
            RevokedScopeDoc::Identity(id) => Some(id.value.clone()),
            RevokedScopeDoc::Segment(name) => Some(name.value.clone()),
            RevokedScopeDoc::Labels(labels) => {
                Some(Scope::Labels(labels.value.0.clone()).selector_text())
            }
        },
    };
    let scopes: Option<Vec<String>> = doc.revoked.iter().map(|e| scope(&e.value)).collect();
    scopes.filter(|s| !s.is_empty())
}

/// A YAML double-quoted scalar holding `text` exactly: `"` and `\` escaped, and every
/// character YAML does not allow raw in a quoted scalar (controls, DEL, C1, line and
/// paragraph separators, BOM, non-characters) written as a `\u`/`\U` escape.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// YAML 1.2's printable set, minus the characters a reader could take for a line break.
fn printable(c: char) -> bool {
    matches!(c as u32,
        0x20..=0x7E | 0xA0..=0x2027 | 0x202A..=0xD7FF | 0xE000..=0xFEFE | 0xFF00..=0xFFFD
        | 0x10000..=0x10FFFF)
}

/// `text` with every control character replaced, for a `#` comment line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if printable(c) { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests;
