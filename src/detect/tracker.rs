//! The probe tracker (docs/probes.md#bounded-state): per source identity, the distinct denied
//! targets it reached within the window, in a table of a fixed number of sources.
//! PURE: std only, time passed in, so every rule is tested without a clock.
//!
//! The bound and the eviction rule:
//! - at most `capacity` sources, each holding at most `distinct_denied - 1` targets (the
//!   one that would make `distinct_denied` is a detection, which removes the source), each
//!   target's text cut to [`TARGET_TEXT_MAX`] bytes; [`Tracker::bound_bytes`] is that bound;
//! - a target older than the window no longer counts (decay); a source with none left is
//!   forgotten;
//! - a new source finding the table full takes the place of the oldest source that has
//!   **one** denied target in the window; a source with two or more (mid-probe) is never
//!   evicted; if every tracked source is mid-probe, the new one is not tracked (counted in
//!   [`Tracker::untracked`]) until the window frees a place.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A target's text (`METHOD destination path`) is cut to this many bytes for display; it
/// is compared by a keyed hash of the whole, so cutting it merges nothing.
pub const TARGET_TEXT_MAX: usize = 256;
/// The longest source ID the table keeps (a SPIFFE ID's maximum length).
pub const SOURCE_ID_MAX: usize = 2048;

/// One denied target: for HTTP the destination, the method and the normalized path without
/// the query; for L4 the destination alone (method and path empty).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The identity being reached.
    pub destination: &'a str,
    /// The method, empty for a TCP connection.
    pub method: &'a str,
    /// The normalized path, empty for a TCP connection.
    pub path: &'a str,
}

impl Target<'_> {
    /// `METHOD destination path`, or the destination alone for a connection; cut to
    /// [`TARGET_TEXT_MAX`] bytes on a character boundary.
    pub fn text(&self) -> Box<str> {
        let full = if self.method.is_empty() && self.path.is_empty() {
            format!("tcp {}", self.destination)
        } else {
            format!("{} {} {}", self.method, self.destination, self.path)
        };
        cut(&full, TARGET_TEXT_MAX).into()
    }
}

fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What one denied request did to the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Remembered; the source has this many distinct denied targets in the window.
    Counted(usize),
    /// The source reached the threshold: the targets it tried (the source is forgotten).
    Detected(Vec<Box<str>>),
    /// The table is full of mid-probe sources: this one is not tracked.
    Untracked,
}

/// A tracked source as `/probes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    /// Its identity.
    pub source: Arc<str>,
    /// The distinct denied targets in the window, oldest first.
    pub targets: Vec<Box<str>>,
}

#[derive(Debug)]
struct Seen {
    key: u64,
    at: Instant,
    text: Box<str>,
}

#[derive(Debug)]
struct Source {
    /// Matches the `fresh` queue item that may evict it.
    seq: u64,
    targets: Vec<Seen>,
}

/// The table of sources and their distinct denied targets.
#[derive(Debug)]
pub struct Tracker {
    threshold: usize,
    window: Duration,
    capacity: usize,
    sources: HashMap<Arc<str>, Source>,
    /// Sources that had one target when queued, oldest first: the eviction candidates
    /// (items whose source since changed are skipped).
    fresh: VecDeque<(Arc<str>, u64)>,
    seq: u64,
    untracked: u64,
    /// When the table was last walked for decayed sources.
    swept: Option<Instant>,
    hasher: RandomState,
}

/// The least time between two walks of a full table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Tracker {
    /// A table of `capacity` sources; `threshold` distinct denied targets within `window`
    /// make a probe (`threshold` ≥ 2).
    pub fn new(threshold: usize, window: Duration, capacity: usize) -> Self {
        Self {
            threshold: threshold.max(2),
            window,
            capacity: capacity.max(1),
            sources: HashMap::new(),
            fresh: VecDeque::new(),
            seq: 0,
            untracked: 0,
            swept: None,
            hasher: RandomState::new(),
        }
    }

    /// Records that `source` was denied `target` at `now`.
    pub fn observe(&mut self, source: &str, target: &Target<'_>, now: Instant) -> Observed {
        let source = cut(source, SOURCE_ID_MAX);
        let key = self
            .hasher
            .hash_one((target.destination, target.method, target.path));
        let window = self.window;
        if let Some(entry) = self.sources.get_mut(source) {
            entry.targets.retain(|t| live(t.at, now, window));
            if let Some(seen) = entry.targets.iter_mut().find(|t| t.key == key) {
                // A repeat counts once; it keeps the target in the window.
                seen.at = now;
                return Observed::Counted(entry.targets.len());
            }
            entry.targets.push(Seen {
                key,
                at: now,
                text: target.text(),
            });
            let count = entry.targets.len();
            if count >= self.threshold {
                let entry = self.sources.remove(source);
                let targets = entry.map(|e| e.targets.into_iter().map(|t| t.text).collect());
                return Observed::Detected(targets.unwrap_or_default());
            }
            if count == 1 {
                // Decayed back to one: evictable again, as the newest.
                self.requeue(source);
            }
            return Observed::Counted(count);
        }
        if self.sources.len() >= self.capacity && !self.make_room(now) {
            self.untracked = self.untracked.saturating_add(1);
            return Observed::Untracked;
        }
        let id: Arc<str> = source.into();
        self.seq += 1;
        self.fresh.push_back((id.clone(), self.seq));
        self.sources.insert(
            id,
            Source {
                seq: self.seq,
                targets: vec![Seen {
                    key,
                    at: now,
                    text: target.text(),
                }],
            },
        );
        self.compact();
        Observed::Counted(1)
    }

    /// Forgets `source` (it was contained, or released).
    pub fn forget(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// The tracked sources with their targets still in the window, most targets first.
    pub fn suspects(&self, now: Instant) -> Vec<Suspect> {
        let mut out: Vec<Suspect> = self
            .sources
            .iter()
            .map(|(source, entry)| Suspect {
                source: source.clone(),
                targets: entry
                    .targets
                    .iter()
                    .filter(|t| live(t.at, now, self.window))
                    .map(|t| t.text.clone())
                    .collect(),
            })
            .filter(|s| !s.targets.is_empty())
            .collect();
        out.sort_by(|a, b| (b.targets.len(), &a.source).cmp(&(a.targets.len(), &b.source)));
        out
    }

    /// Sources tracked now (≤ the capacity).
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// New sources not tracked because every tracked one was mid-probe.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// The most memory the table's contents can take, in bytes: `capacity` sources of at
    /// most [`SOURCE_ID_MAX`] bytes with `threshold - 1` targets of at most
    /// [`TARGET_TEXT_MAX`] bytes, the eviction queue (≤ 2 × capacity + 16 items), and the
    /// hash map's own slots (counted at twice the capacity).
    pub fn bound_bytes(&self) -> usize {
        let target = size_of::<Seen>() + TARGET_TEXT_MAX;
        let source = SOURCE_ID_MAX
            + size_of::<Source>()
            + size_of::<Arc<str>>()
            + 2 * size_of::<usize>()
            + (self.threshold - 1) * target;
        let slots = 2 * self.capacity * (size_of::<Arc<str>>() + size_of::<Source>() + 8);
        let queue = (2 * self.capacity + 16) * size_of::<(Arc<str>, u64)>();
        self.capacity * source + slots + queue
    }

    /// The bytes the contents take now, counted as [`Self::bound_bytes`] counts them.
    pub fn used_bytes(&self) -> usize {
        let sources: usize = self
            .sources
            .iter()
            .map(|(id, entry)| {
                let targets: usize = entry
                    .targets
                    .iter()
                    .map(|t| size_of::<Seen>() + t.text.len())
                    .sum();
                id.len() + size_of::<Source>() + size_of::<Arc<str>>() + targets
            })
            .sum();
        let slots = self.sources.capacity() * (size_of::<Arc<str>>() + size_of::<Source>() + 8);
        let queue = self.fresh.capacity() * size_of::<(Arc<str>, u64)>();
        sources + slots + queue
    }

    /// Frees one place: the oldest source with at most one target in the window; failing
    /// that, sources whose every target decayed. False if every source is mid-probe.
    fn make_room(&mut self, now: Instant) -> bool {
        while let Some((id, seq)) = self.fresh.pop_front() {
            let window = self.window;
            let Some(entry) = self.sources.get_mut(&id) else {
                continue;
            };
            if entry.seq != seq {
                continue;
            }
            entry.targets.retain(|t| live(t.at, now, window));
            if entry.targets.len() <= 1 {
                self.sources.remove(&id);
                return true;
            }
        }
        // Every queued source is mid-probe (or gone): drop what decayed, requeue what fell
        // back to one target — at most once a second, so a stream of new sources against a
        // table full of mid-probe ones costs a lookup each, not a walk of the table.
        if self
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return false;
        }
        self.swept = Some(now);
        let window = self.window;
        self.sources.retain(|_, entry| {
            entry.targets.retain(|t| live(t.at, now, window));
            !entry.targets.is_empty()
        });
        let singles: Vec<Arc<str>> = self
            .sources
            .iter()
            .filter(|(_, e)| e.targets.len() == 1)
            .map(|(id, _)| id.clone())
            .collect();
        for id in singles {
            self.requeue(&id);
        }
        if self.sources.len() < self.capacity {
            return true;
        }
        // Requeued singles are evictable now.
        if let Some((id, _)) = self.fresh.pop_front() {
            self.sources.remove(&id);
            return true;
        }
        false
    }

    /// Queues `source` as the newest eviction candidate.
    fn requeue(&mut self, source: &str) {
        let Some(id) = self.sources.get_key_value(source).map(|(id, _)| id.clone()) else {
            return;
        };
        self.seq += 1;
        if let Some(entry) = self.sources.get_mut(source) {
            entry.seq = self.seq;
        }
        self.fresh.push_back((id, self.seq));
        self.compact();
    }

    /// Keeps the queue within 2 × capacity + 16 items by dropping the stale ones.
    fn compact(&mut self) {
        if self.fresh.len() <= 2 * self.capacity + 16 {
            return;
        }
        let sources = &self.sources;
        self.fresh
            .retain(|(id, seq)| sources.get(id).is_some_and(|e| e.seq == *seq));
        self.fresh.shrink_to(2 * self.capacity + 16);
    }
}

/// Whether a target seen `at` still counts at `now`.
fn live(at: Instant, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(at) < window
}

#[cfg(test)]
mod tests;
