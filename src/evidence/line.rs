//! One decision-log line (docs/operations.md#decision-log, the stable line format) → the key
//! and stats of one observation, or why it is not one. The JSON object may follow a prefix
//! (`kubectl logs --timestamps`, a collector's tag): it starts at the first `{`.

use std::borrow::Cow;

use serde::Deserialize;

use super::observe::{Direction, Key, Logged, Protocol, Stats};

/// The fields replay needs; every other field is ignored, as the stable format asks.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    direction: Option<Cow<'a, str>>,
    #[serde(borrow)]
    protocol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    destination_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(borrow)]
    rule: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    sampled: Option<bool>,
}

/// Why a line is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// No JSON object on the line (another program's line, a human log line).
    NotJson,
    /// A JSON object cut short (a truncated file, a line split by a collector).
    Truncated,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Longer than [`MAX_LINE`]: not read.
    TooLong,
    /// JSON, but not of the decision log's shape (no `decision`, unknown `direction`, …).
    NotDecision,
}

impl Skip {
    /// The word in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not-json",
            Self::Truncated => "truncated",
            Self::InvalidUtf8 => "invalid-utf8",
            Self::TooLong => "too-long",
            Self::NotDecision => "not-a-decision-line",
        }
    }
}

/// A decision line is a few hundred bytes; anything past this is not one and is not read.
pub const MAX_LINE: usize = 64 * 1024;

/// What a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// One request or connection decided by the policy (handed to the caller).
    Observed,
    /// A decision line of a request refused before the policy was asked (unknown
    /// destination, malformed path): nothing to replay.
    Refused,
    /// A decision line that is not a new request: a TCP connection's `close` or `redecide`.
    Continuation,
    /// Blank.
    Blank,
    /// Not counted, and why.
    Skipped(Skip),
}

/// The reasons `decide` gives (docs/policy-language.md#decision-order). A `deny` with any
/// other reason was refused before a decision.
const DECIDED: &[&str] = &[
    "allow-rule",
    "deny-rule",
    "default-deny",
    "revoked",
    "dry-run-deny",
    "rule-expired",
    "ambiguous-path",
];

/// Reads one line (without its newline); an observation is handed to `found` (its strings
/// borrow the line, or are unescaped copies that live for the call).
pub fn parse(bytes: &[u8], found: impl FnOnce(&Key<'_>, &Stats)) -> Parsed {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Parsed::Skipped(Skip::InvalidUtf8);
    };
    let text = text.trim();
    if text.is_empty() {
        return Parsed::Blank;
    }
    let Some(start) = text.find('{') else {
        return Parsed::Skipped(Skip::NotJson);
    };
    let raw: Raw<'_> = match serde_json::from_str(&text[start..]) {
        Ok(raw) => raw,
        Err(e) if e.is_eof() => return Parsed::Skipped(Skip::Truncated),
        Err(e) if e.is_data() => return Parsed::Skipped(Skip::NotDecision),
        Err(_) => return Parsed::Skipped(Skip::NotJson),
    };
    observed(raw, found)
}

fn observed(raw: Raw<'_>, found: impl FnOnce(&Key<'_>, &Stats)) -> Parsed {
    let Some(decision) = raw.decision.as_deref().and_then(Logged::parse) else {
        return Parsed::Skipped(Skip::NotDecision);
    };
    let Some(direction) = raw.direction.as_deref().and_then(Direction::parse) else {
        return Parsed::Skipped(Skip::NotDecision);
    };
    let Some(protocol) = Protocol::parse(raw.protocol.as_deref()) else {
        return Parsed::Skipped(Skip::NotDecision);
    };
    if protocol == Protocol::Tcp && raw.event.as_deref().is_some_and(|e| e != "open") {
        return Parsed::Continuation;
    }
    let reason = raw.reason.as_deref();
    if reason.is_some_and(|r| !DECIDED.contains(&r)) {
        return Parsed::Refused;
    }
    let (Some(source), Some(destination)) = (&raw.source_id, &raw.destination_id) else {
        return Parsed::Refused;
    };
    let (method, path) = match protocol {
        Protocol::Tcp => (Cow::Borrowed(""), Cow::Borrowed("")),
        Protocol::Http => match (&raw.method, &raw.path) {
            (Some(m), Some(p)) => (m.clone(), p.clone()),
            _ => return Parsed::Skipped(Skip::NotDecision),
        },
    };
    let at = raw.time.as_deref().and_then(super::time::parse);
    let stats = Stats {
        count: 1,
        first: at,
        last: at,
        sampled: raw.sampled == Some(true),
    };
    found(
        &Key {
            direction,
            protocol,
            source,
            destination,
            method: &method,
            path: &path,
            decision,
            rule: raw.rule.as_deref(),
            reason,
        },
        &stats,
    );
    Parsed::Observed
}
