//! `compile`: a parsed [`PolicySource`] → an immutable, indexed [`CompiledPolicy`], or every
//! error in it at file:line:col; then the policy's own `tests:` run (docs/policy-language.md).
//! Index layout, so a decision never scans the rule list: segments in an [`IdentityIndex`]
//! trie per trust domain; each distinct label selector a *group*; "keys" are segment ids, then
//! group ids, then one `ANY` key for `"*"`; rules filed under every (destination key, source
//! key) pair they name.
use std::sync::atomic::{AtomicU64, Ordering};

use super::assertions::run_tests;
use super::classify::{Classifier, Keys, REVOKED};
use super::compiled::{CompiledPolicy, DstBucket, Group, Rule, Segment, Target};
use super::error::PolicyErrors;
use super::load::PolicySource;
use super::pattern::IdentityPattern;
use super::trie::IdentityIndex;
use super::validate::{Parts, validate};
use super::version::version_of;

/// Source of [`CompiledPolicy`] instance numbers.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A rule filed under one key pair: (destination key, source key, rule index).
type Filing = (u32, u32, u32);

/// Validates, indexes and tests a policy as of now (the system clock).
///
/// # Errors
/// Every problem found, each at file:line:col; failing `tests:` make the policy invalid.
pub fn compile(source: &PolicySource) -> Result<CompiledPolicy, PolicyErrors> {
    compile_at(source, unix_now())
}

/// The unix time now, in seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// [`compile`] as of unix time `now`: rules whose `expires:` is at or before `now` match
/// nothing, `revoked:` entries whose `until:` is at or before `now` revoke nothing, and
/// [`CompiledPolicy::next_change`] is the first such instant after `now`.
///
/// # Errors
/// As [`compile`].
pub fn compile_at(source: &PolicySource, now: i64) -> Result<CompiledPolicy, PolicyErrors> {
    compile_parts(validate(source)?, source, now, Built::Loaded)
}

/// Which state a build makes of validated parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Built {
    /// The policy a (re)load publishes: its `tests:` run, and one failing makes it invalid.
    Loaded,
    /// The state an expiry publishes ([`successor`]): the `tests:` are not run again.
    Successor,
}

/// [`compile_at`] or [`successor`] of `parts`, already validated from `source` (which is
/// only read for its `tests:`).
pub(super) fn compile_parts(
    parts: Parts,
    source: &PolicySource,
    now: i64,
    built: Built,
) -> Result<CompiledPolicy, PolicyErrors> {
    let policy = build(parts, now);
    if built == Built::Successor {
        return Ok(CompiledPolicy {
            test_count: count_tests(source),
            ..policy
        });
    }
    let outcome = run_tests(&policy, source);
    if !outcome.failures.is_empty() {
        return Err(PolicyErrors(outcome.failures));
    }
    Ok(CompiledPolicy {
        test_count: count_tests(source) - outcome.suspended.len(),
        suspended_tests: outcome.suspended,
        ..policy
    })
}

/// The state a running sidecar publishes at `at` (its policy's [`CompiledPolicy::next_change`]):
/// the same files compiled as of `at`. The files' `tests:` were checked when they were
/// loaded and are not run again: an expiry or a lifted containment applies at its instant
/// even if a test expected the old behaviour (`policy check` lists what expires when).
///
/// # Errors
/// As [`compile`], without the `tests:`.
pub fn successor(source: &PolicySource, at: i64) -> Result<CompiledPolicy, PolicyErrors> {
    compile_parts(validate(source)?, source, at, Built::Successor)
}

/// Indexes validated parts as of `now`.
fn build(mut parts: Parts, now: i64) -> CompiledPolicy {
    let Settled {
        version,
        in_force,
        next_change,
    } = settle(&mut parts, now);
    let Parts {
        files,
        segments,
        groups,
        rules,
        revoked,
    } = parts;
    let mut policy = index(files, segments, groups, rules, in_force, version);
    policy.revocations = revoked;
    policy.now = now;
    policy.next_change = next_change;
    policy
}

/// What time decides about validated parts: the version of their state as of `now`, the
/// revoked patterns in force, and the next instant that state changes.
pub(super) struct Settled {
    /// [`CompiledPolicy::version`] of this state.
    pub(super) version: String,
    /// Every entry's patterns but lifted ones', sorted, de-duplicated.
    pub(super) in_force: Vec<IdentityPattern>,
    /// The first `expires:` or `until:` after `now`.
    pub(super) next_change: Option<i64>,
}

/// Marks rules expired and revocations lifted as of `now` (the whole policy's state that
/// [`super::slice`] reports as the version of a slice is computed by the same steps).
pub(super) fn settle(parts: &mut Parts, now: i64) -> Settled {
    let mut next_change: Option<i64> = None;
    let mut later = |t: i64| {
        if t > now {
            next_change = Some(next_change.map_or(t, |n| n.min(t)));
        }
    };
    for rule in &mut parts.rules {
        if let Some(t) = rule.expires {
            rule.expired = t <= now;
            later(t);
        }
    }
    for entry in &mut parts.revoked {
        if let Some(t) = entry.until {
            entry.lifted = t <= now;
            later(t);
        }
    }
    let mut in_force: Vec<IdentityPattern> = parts
        .revoked
        .iter()
        .filter(|r| !r.lifted)
        .flat_map(|r| r.patterns.iter().cloned())
        .collect();
    in_force.sort();
    in_force.dedup();
    let version = version_of(&parts.segments, &parts.groups, &parts.rules, &in_force);
    Settled {
        version,
        in_force,
        next_change,
    }
}

fn count_tests(source: &PolicySource) -> usize {
    source.files.iter().map(|f| f.doc.tests.len()).sum()
}

/// Builds the trie, the rule index and the classifier from validated parts.
fn index(
    files: Vec<String>,
    segments: Vec<Segment>,
    groups: Vec<Group>,
    rules: Vec<Rule>,
    revoked: Vec<IdentityPattern>,
    version: String,
) -> CompiledPolicy {
    let fleet_rules = rules.len();
    let seg_count = segments.len() as u32;
    let any = seg_count + groups.len() as u32;
    let key = |t: Target| match t {
        Target::Any => any,
        Target::Segment(s) => s,
        Target::Group(g) => seg_count + g,
    };
    let filed = file_rules(&rules, key);
    let mut src_used = vec![false; any as usize + 1];
    filed
        .iter()
        .for_each(|&(_, s, _)| src_used[s as usize] = true);
    let by_dst = dst_buckets(&filed, any);
    let keys = Keys {
        of_segment: segment_keys(seg_count, &groups),
        any,
        src_used,
        dst_used: by_dst.iter().map(Option::is_some).collect(),
    };
    let named = segments.iter().flat_map(|s| &s.identities);
    let classifier = Classifier::new(
        identity_index(&segments, &revoked),
        keys,
        NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
        named.chain(&revoked),
    );
    CompiledPolicy {
        version,
        files,
        segments,
        groups,
        rules,
        revoked,
        revocations: Vec::new(),
        suspended_tests: Vec::new(),
        now: 0,
        next_change: None,
        test_count: 0,
        fleet_rules,
        by_dst,
        classifier,
    }
}

/// The trie of every segment's patterns (valued by segment id) and of `revoked`.
fn identity_index(segments: &[Segment], revoked: &[IdentityPattern]) -> IdentityIndex {
    let mut identities = IdentityIndex::default();
    for (id, segment) in segments.iter().enumerate() {
        segment
            .identities
            .iter()
            .for_each(|p| identities.insert(p, id as u32));
    }
    // Revoked patterns share the trie, so one walk classifies and checks revocation.
    revoked
        .iter()
        .enumerate()
        .for_each(|(i, p)| identities.insert(p, REVOKED | i as u32));
    identities
}

/// Segment id → its keys: itself, then the group keys (after the segment keys) it is in.
fn segment_keys(seg_count: u32, groups: &[Group]) -> Vec<Box<[u32]>> {
    let mut segment_keys: Vec<Vec<u32>> = (0..seg_count).map(|s| vec![s]).collect();
    for (g, group) in groups.iter().enumerate() {
        group
            .members
            .iter()
            .for_each(|&s| segment_keys[s as usize].push(seg_count + g as u32));
    }
    segment_keys
        .into_iter()
        .map(Vec::into_boxed_slice)
        .collect()
}

/// Every (destination key, source key) pair each rule names, sorted so each bucket is built
/// once at its final size.
fn file_rules(rules: &[Rule], key: impl Fn(Target) -> u32) -> Vec<Filing> {
    let mut filed: Vec<Filing> = Vec::with_capacity(rules.len() * 2);
    for (r, rule) in rules.iter().enumerate() {
        for &dst in &rule.to {
            filed.extend(rule.from.iter().map(|&src| (key(dst), key(src), r as u32)));
        }
    }
    filed.sort_unstable();
    filed.dedup();
    filed
}

/// Key → the bucket of rules filed under it as destination, for keys `0..=any`.
fn dst_buckets(filed: &[Filing], any: u32) -> Vec<Option<Box<DstBucket>>> {
    let mut by_dst: Vec<Option<Box<DstBucket>>> = (0..=any).map(|_| None).collect();
    for for_dst in filed.chunk_by(|a, b| a.0 == b.0) {
        by_dst[for_dst[0].0 as usize] = Some(Box::new(bucket(for_dst)));
    }
    by_dst
}

/// One destination key's rules, by source key; `filed` is sorted and shares the dst key.
fn bucket(filed: &[Filing]) -> DstBucket {
    let by_src = filed
        .chunk_by(|a, b| a.1 == b.1)
        .map(|for_src| (for_src[0].1, for_src.iter().map(|t| t.2).collect()))
        .collect();
    DstBucket { by_src }
}
