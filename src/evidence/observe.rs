//! [`Observations`]: the distinct observed (direction, protocol, source, destination, method,
//! path, decision, rule, reason) keys with how often each was seen and when first and last.
//! A fleet's log of millions of lines holds far fewer distinct keys; this is all the commands
//! keep in memory. Each key is packed into one string (fields joined by NUL, which no field
//! may hold) so a line is counted with one hash lookup and no allocation once its key is known.

use rustc_hash::FxHashMap;

/// Which side of a sidecar decided (the log's `direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// `inbound`: mTLS in, ingress rules.
    Inbound,
    /// `outbound`: egress rules.
    Outbound,
    /// `ext_authz`: a Check from Envoy (docs/envoy.md), decided as inbound is — the
    /// destination is the sidecar's own identity.
    ExtAuthz,
}

impl Direction {
    /// The log's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::ExtAuthz => "ext_authz",
        }
    }

    /// From the log's word.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "inbound" => Some(Self::Inbound),
            "outbound" => Some(Self::Outbound),
            "ext_authz" => Some(Self::ExtAuthz),
            _ => None,
        }
    }
}

/// An HTTP request or a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// One HTTP request (a line without `protocol`).
    Http,
    /// One TCP connection, counted by its `open` line.
    Tcp,
}

impl Protocol {
    /// The word of the log and of observations.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
        }
    }

    /// From that word; absent or empty is HTTP.
    pub fn parse(text: Option<&str>) -> Option<Self> {
        match text {
            None | Some("" | "http") => Some(Self::Http),
            Some("tcp") => Some(Self::Tcp),
            _ => None,
        }
    }
}

/// The decision as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Logged {
    /// `allow`.
    Allow,
    /// `deny`.
    Deny,
    /// `would-deny`: audit mode, or a `dry_run` deny rule (reason `dry-run-deny`).
    WouldDeny,
}

impl Logged {
    /// The log's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::WouldDeny => "would-deny",
        }
    }

    /// From the log's word.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            "would-deny" => Some(Self::WouldDeny),
            _ => None,
        }
    }
}

/// One distinct observation, borrowed from [`Observations`] (or from a line being counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// Which side decided.
    pub direction: Direction,
    /// HTTP request or TCP connection.
    pub protocol: Protocol,
    /// The calling SPIFFE ID, as logged (not yet checked).
    pub source: &'a str,
    /// The SPIFFE ID reached.
    pub destination: &'a str,
    /// The method (empty for TCP).
    pub method: &'a str,
    /// The normalized path (empty for TCP).
    pub path: &'a str,
    /// The decision logged.
    pub decision: Logged,
    /// The deciding rule, if one decided.
    pub rule: Option<&'a str>,
    /// The reason logged, if known (observations may leave it out).
    pub reason: Option<&'a str>,
}

impl Key<'_> {
    /// Whether the policy in force let it through when enforced: `allow`, or a `would-deny`
    /// of a `dry_run` rule (which decides nothing). A `would-deny` of audit mode (or one whose
    /// reason is unknown) is a policy denial the audit let pass.
    pub fn was_allowed(&self) -> bool {
        match self.decision {
            Logged::Allow => true,
            Logged::Deny => false,
            Logged::WouldDeny => self.reason == Some("dry-run-deny"),
        }
    }

    /// Whether the traffic reached its destination (`allow` and every `would-deny`): what
    /// `learn` must keep allowed.
    pub fn went_through(&self) -> bool {
        self.decision != Logged::Deny
    }

    fn pack(&self, into: &mut String) -> bool {
        let fields = [
            self.source,
            self.destination,
            self.method,
            self.path,
            self.rule.unwrap_or(""),
            self.reason.unwrap_or("\u{1}"),
        ];
        if fields.iter().any(|f| f.contains('\0')) {
            return false;
        }
        into.clear();
        into.push(match self.direction {
            Direction::Inbound => 'i',
            Direction::Outbound => 'o',
            Direction::ExtAuthz => 'e',
        });
        into.push(match self.protocol {
            Protocol::Http => 'h',
            Protocol::Tcp => 't',
        });
        into.push(match self.decision {
            Logged::Allow => 'a',
            Logged::Deny => 'd',
            Logged::WouldDeny => 'w',
        });
        for f in fields {
            into.push('\0');
            into.push_str(f);
        }
        true
    }

    fn unpack(packed: &str) -> Key<'_> {
        let b = packed.as_bytes();
        let direction = match b[0] {
            b'i' => Direction::Inbound,
            b'e' => Direction::ExtAuthz,
            _ => Direction::Outbound,
        };
        let protocol = if b[1] == b'h' {
            Protocol::Http
        } else {
            Protocol::Tcp
        };
        let decision = match b[2] {
            b'a' => Logged::Allow,
            b'd' => Logged::Deny,
            _ => Logged::WouldDeny,
        };
        let mut parts = packed[4..].split('\0');
        let mut next = || parts.next().unwrap_or("");
        let (source, destination, method, path) = (next(), next(), next(), next());
        let (rule, reason) = (next(), next());
        Key {
            direction,
            protocol,
            source,
            destination,
            method,
            path,
            decision,
            rule: (!rule.is_empty()).then_some(rule),
            reason: (reason != "\u{1}").then_some(reason),
        }
    }
}

/// How often a key was seen, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Lines (or the observations' `count`) for it.
    pub count: u64,
    /// Unix seconds of the first and the last, when the input said.
    pub first: Option<i64>,
    /// See `first`.
    pub last: Option<i64>,
    /// Some of its lines passed the allowed-request sampler: `count` is a lower bound.
    pub sampled: bool,
}

impl Stats {
    /// Adds `other` (another line, another file's aggregate).
    pub fn merge(&mut self, other: &Stats) {
        self.count = self.count.saturating_add(other.count);
        self.first = min_some(self.first, other.first);
        self.last = max_some(self.last, other.last);
        self.sampled |= other.sampled;
    }
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The distinct observations of one or many inputs.
#[derive(Debug, Default)]
pub struct Observations {
    map: FxHashMap<Box<str>, Stats>,
    scratch: String,
    /// Decision lines (or observation rows' counts) counted into keys.
    pub counted: u64,
    /// Decision lines of requests refused before the policy was asked (unknown destination,
    /// a malformed path, …): nothing to replay, counted here only.
    pub refused: u64,
    /// Any counted line passed the sampler: every count is a lower bound.
    pub sampled: bool,
}

impl Observations {
    /// Adds `stats` to `key`; false (nothing added) when a field holds a NUL.
    pub fn add(&mut self, key: &Key<'_>, stats: &Stats) -> bool {
        let mut scratch = std::mem::take(&mut self.scratch);
        let packed = key.pack(&mut scratch);
        if packed {
            match self.map.get_mut(scratch.as_str()) {
                Some(known) => known.merge(stats),
                None => {
                    self.map.insert(scratch.as_str().into(), *stats);
                }
            }
            self.counted = self.counted.saturating_add(stats.count);
            self.sampled |= stats.sampled;
        }
        self.scratch = scratch;
        packed
    }

    /// How many distinct keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key and its stats, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Key<'_>, &Stats)> {
        self.map.iter().map(|(k, s)| (Key::unpack(k), s))
    }

    /// Every key and its stats, sorted (for deterministic output).
    pub fn sorted(&self) -> Vec<(Key<'_>, &Stats)> {
        let mut all: Vec<_> = self.map.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter().map(|(k, s)| (Key::unpack(k), s)).collect()
    }

    /// Adds everything of `other`.
    pub fn absorb(&mut self, other: Observations) {
        for (k, s) in &other.map {
            match self.map.get_mut(k) {
                Some(known) => known.merge(s),
                None => {
                    self.map.insert(k.clone(), *s);
                }
            }
        }
        self.counted = self.counted.saturating_add(other.counted);
        self.refused = self.refused.saturating_add(other.refused);
        self.sampled |= other.sampled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(path: &'a str, rule: Option<&'a str>) -> Key<'a> {
        Key {
            direction: Direction::Inbound,
            protocol: Protocol::Http,
            source: "spiffe://example.org/a",
            destination: "spiffe://example.org/b",
            method: "GET",
            path,
            decision: Logged::WouldDeny,
            rule,
            reason: Some("default-deny"),
        }
    }

    #[test]
    fn keys_round_trip_and_counts_add_by_key() {
        let mut obs = Observations::default();
        let one = |t| Stats {
            count: 1,
            first: Some(t),
            last: Some(t),
            sampled: false,
        };
        assert!(obs.add(&key("/x", None), &one(20)));
        assert!(obs.add(&key("/x", None), &one(10)));
        assert!(obs.add(&key("/x", Some("r")), &one(30)));
        assert!(!obs.add(&key("/x\0y", None), &one(30)));

        assert_eq!(obs.len(), 2);
        assert_eq!(obs.counted, 3);
        let all = obs.sorted();
        assert_eq!(all[0].0, key("/x", None));
        assert_eq!(all[0].1.count, 2);
        assert_eq!((all[0].1.first, all[0].1.last), (Some(10), Some(20)));
        assert_eq!(all[1].0, key("/x", Some("r")));
        let mut no_reason = key("/x", None);
        no_reason.reason = None;
        assert!(obs.add(&no_reason, &one(1)));
        assert!(obs.iter().any(|(k, _)| k == no_reason));
    }
}
