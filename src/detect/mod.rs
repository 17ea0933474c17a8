//! Probe detection and automatic, time-boxed containment at the sidecar (docs/probes.md).
//!
//! The data plane touches [`Probes`] in two places only: [`Probes::is_contained`] before a
//! decision (one relaxed atomic load and a branch while nobody is contained), and
//! [`Probes::denied`] after a deny (never on an allowed request). A detection writes a
//! decision-log line (reason `probe-detected`), counts `segward_probes_detected_total`, and
//! under `action: contain` refuses the source on this sidecar for `contain_for` and wakes
//! every open connection, which decides its peer again and closes if it is contained (the
//! cut of a published revocation, docs/runbook.md), without a policy rebuild.
//! The table of suspects is [`tracker`]'s, bounded whatever peers do.

pub mod tracker;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{ProbeAction, ProbeSettings};
use crate::policy::{CompiledPolicy, Decision, Request, Verdict};

use crate::telemetry::decision_log::{self, Direction, ProbeRecord};
use crate::telemetry::metrics::Metrics;
pub use tracker::{Observed, Target, Tracker};

/// A source contained on this sidecar.
#[derive(Debug, Clone)]
struct Containment {
    direction: Direction,
    since: SystemTime,
    until: Instant,
    until_wall: SystemTime,
    trigger: &'static str,
    rule: Option<String>,
    targets: Vec<Box<str>>,
}

impl Containment {
    /// What `/policy` lists of it (`/probes` adds the targets and the fleet command).
    fn json(&self, source: &str) -> Value {
        json!({
            "identity": source,
            "direction": self.direction.as_str(),
            "trigger": self.trigger,
            "rule": self.rule,
            "since": rfc3339(self.since),
            "until": rfc3339(self.until_wall),
        })
    }
}

/// The detector of one sidecar, shared by its listeners and its admin endpoint.
pub struct Probes {
    settings: Option<ProbeSettings>,
    tracker: Mutex<Tracker>,
    contained: Mutex<HashMap<Box<str>, Containment>>,
    /// `contained.len()`, read without the lock on every request.
    active: AtomicUsize,
    /// Wakes every open connection to decide its peer again (`Live::wake_connections`).
    wake: Box<dyn Fn() + Send + Sync>,
    metrics: Arc<Metrics>,
    /// The sidecar's policy folder, for the fleet-wide command `/probes` prints.
    policy_dir: PathBuf,
}

/// What a probe was detected by.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<'a> {
    /// `distinct_denied` distinct denied targets within `window`.
    DistinctDenied,
    /// The first match of this `tripwire: true` rule.
    Tripwire(&'a str),
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("settings", &self.settings)
            .field("contained", &self.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// The detector for `settings` (`None`: off — nothing is tracked, nobody is contained);
    /// `wake` makes every open connection decide its peer again (the sidecar passes
    /// [`crate::live::Live::wake_connections`]).
    pub fn new(
        settings: Option<ProbeSettings>,
        wake: impl Fn() + Send + Sync + 'static,
        metrics: Arc<Metrics>,
        policy_dir: PathBuf,
    ) -> Self {
        let s = settings.unwrap_or_default();
        Self {
            settings,
            tracker: Mutex::new(Tracker::new(s.distinct_denied, s.window, s.max_sources)),
            contained: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            wake: Box::new(wake),
            metrics,
            policy_dir,
        }
    }

    /// Whether the detector is on (`detect.probe` is configured).
    pub fn enabled(&self) -> bool {
        self.settings.is_some()
    }

    /// Whether `source` is contained now. While nobody is, one atomic load.
    #[inline]
    pub fn is_contained(&self, source: &str) -> bool {
        if self.active.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.contained_now(source)
    }

    #[cold]
    fn contained_now(&self, source: &str) -> bool {
        let mut contained = lock(&self.contained);
        self.lift_expired(&mut contained, Instant::now());
        contained.contains_key(source)
    }

    /// Decides an HTTP `request` under `policy` as every data plane does (docs/probes.md): a
    /// source contained after a probe is refused before any rule, and only a deny reaches the
    /// detector — an allowed request pays one atomic load and one comparison.
    pub fn decide<'p>(
        &self,
        policy: &'p CompiledPolicy,
        direction: Direction,
        request: &Request<'_>,
    ) -> Verdict<'p> {
        if self.is_contained(request.source.as_str()) {
            return Verdict::probe_contained();
        }
        let verdict = policy.decide(request);
        if verdict.decision == Decision::Deny && self.enabled() {
            let target = Target {
                destination: request.destination.as_str(),
                method: request.method,
                path: request.path.as_str(),
            };
            let tripwire = policy.tripwire(request);
            self.denied(direction, request.source.as_str(), &target, tripwire);
        }
        verdict
    }

    /// Records a deny of `source` reaching `target` on `direction` (never called for a
    /// request refused because its source is contained); `tripwire` names the tripwire rule
    /// that matched, if one did.
    pub fn denied(
        &self,
        direction: Direction,
        source: &str,
        target: &Target<'_>,
        tripwire: Option<&str>,
    ) {
        let Some(settings) = self.settings else {
            return;
        };
        let now = Instant::now();
        let (trigger, targets) = match tripwire {
            Some(rule) => {
                lock(&self.tracker).forget(source);
                (Trigger::Tripwire(rule), vec![target.text()])
            }
            None => match lock(&self.tracker).observe(source, target, now) {
                Observed::Detected(targets) => (Trigger::DistinctDenied, targets),
                Observed::Counted(_) | Observed::Untracked => return,
            },
        };
        self.detected(&settings, direction, source, trigger, targets, now);
    }

    /// Acts on a probe: the line, the metric, and under `contain` the containment and the
    /// wake of every open connection.
    fn detected(
        &self,
        settings: &ProbeSettings,
        direction: Direction,
        source: &str,
        trigger: Trigger<'_>,
        targets: Vec<Box<str>>,
        now: Instant,
    ) {
        let mut action = settings.action;
        if action == ProbeAction::Contain
            && !self.contain(settings, direction, source, trigger, &targets, now)
        {
            action = ProbeAction::Alert;
        }
        self.metrics.probe_detected(direction, action.as_str());
        let (trigger_word, rule) = match trigger {
            Trigger::DistinctDenied => ("distinct-denied", None),
            Trigger::Tripwire(rule) => ("tripwire", Some(rule)),
        };
        let joined = targets.join("; ");
        decision_log::write_probe(&ProbeRecord {
            direction,
            source_id: source,
            action: action.as_str(),
            trigger: trigger_word,
            rule,
            targets: &joined,
            targets_seen: targets.len() as u64,
            window_s: settings.window.as_secs(),
            contain_for_s: (action == ProbeAction::Contain)
                .then_some(settings.contain_for.as_secs()),
        });
        tracing::warn!(
            direction = direction.as_str(),
            source_id = source,
            action = action.as_str(),
            trigger = trigger_word,
            targets = targets.len(),
            "probe detected"
        );
        if action == ProbeAction::Contain {
            // After the containment is in the table: each woken connection sees it.
            (self.wake)();
        }
    }

    /// Contains `source` until `now + contain_for`; false if the table of containments is
    /// full (as many as `max_sources`, none lifted yet), in which case it only alerts.
    fn contain(
        &self,
        settings: &ProbeSettings,
        direction: Direction,
        source: &str,
        trigger: Trigger<'_>,
        targets: &[Box<str>],
        now: Instant,
    ) -> bool {
        let mut contained = lock(&self.contained);
        self.lift_expired(&mut contained, now);
        if contained.len() >= settings.max_sources && !contained.contains_key(source) {
            tracing::error!(
                source_id = source,
                "probe containments full (detect.probe.max_sources); alerting only"
            );
            return false;
        }
        let rule = match trigger {
            Trigger::DistinctDenied => None,
            Trigger::Tripwire(rule) => Some(rule.to_owned()),
        };
        let wall = SystemTime::now();
        contained.insert(
            source.into(),
            Containment {
                direction,
                since: wall,
                until: now + settings.contain_for,
                until_wall: wall + settings.contain_for,
                trigger: match trigger {
                    Trigger::DistinctDenied => "distinct-denied",
                    Trigger::Tripwire(_) => "tripwire",
                },
                rule,
                targets: targets.to_vec(),
            },
        );
        self.active.store(contained.len(), Ordering::Relaxed);
        true
    }

    /// Lifts the containment of `source` now (`POST /probes/release`); false if it was not
    /// contained.
    pub fn release(&self, source: &str) -> bool {
        let mut contained = lock(&self.contained);
        self.lift_expired(&mut contained, Instant::now());
        let released = contained.remove(source).is_some();
        self.active.store(contained.len(), Ordering::Relaxed);
        if released {
            lock(&self.tracker).forget(source);
            tracing::warn!(source_id = source, "probe containment released");
        }
        released
    }

    /// Drops the containments whose `contain_for` has passed.
    fn lift_expired(&self, contained: &mut HashMap<Box<str>, Containment>, now: Instant) {
        let before = contained.len();
        contained.retain(|source, c| {
            let keep = c.until > now;
            if !keep {
                tracing::info!(
                    source_id = &**source,
                    "probe containment lifted (contain_for passed)"
                );
            }
            keep
        });
        if contained.len() != before {
            self.active.store(contained.len(), Ordering::Relaxed);
        }
    }

    /// The containments in force, as `/policy` lists them.
    pub fn contained_json(&self) -> Value {
        let mut contained = lock(&self.contained);
        self.lift_expired(&mut contained, Instant::now());
        let mut list: Vec<_> = contained.iter().map(|(source, c)| c.json(source)).collect();
        list.sort_by(|a, b| a["identity"].as_str().cmp(&b["identity"].as_str()));
        Value::Array(list)
    }

    /// `GET /probes`: the settings, the contained identities and the current suspects, each
    /// with the targets seen and the command that makes its containment fleet-wide (its
    /// reason names `own_id`, the sidecar's SPIFFE ID in force).
    pub fn report(&self, own_id: &str) -> Value {
        let Some(settings) = self.settings else {
            return json!({ "enabled": false, "contained": [], "suspects": [] });
        };
        let now = Instant::now();
        let mut contained = {
            let mut table = lock(&self.contained);
            self.lift_expired(&mut table, now);
            table
                .iter()
                .map(|(source, c)| {
                    let mut entry = c.json(source);
                    entry["targets"] = json!(c.targets);
                    entry["fleet_command"] =
                        json!(self.fleet_command(own_id, source, c.targets.len()));
                    entry
                })
                .collect::<Vec<_>>()
        };
        contained.sort_by(|a, b| a["identity"].as_str().cmp(&b["identity"].as_str()));
        let (suspects, tracked, untracked) = {
            let tracker = lock(&self.tracker);
            (tracker.suspects(now), tracker.len(), tracker.untracked())
        };
        let suspects: Vec<_> = suspects
            .iter()
            .map(|s| {
                json!({
                    "identity": &*s.source,
                    "targets": s.targets,
                    "fleet_command": self.fleet_command(own_id, &s.source, s.targets.len()),
                })
            })
            .collect();
        json!({
            "enabled": true,
            "settings": {
                "distinct_denied": settings.distinct_denied,
                "window_s": settings.window.as_secs(),
                "action": settings.action.as_str(),
                "contain_for_s": settings.contain_for.as_secs(),
                "max_sources": settings.max_sources,
            },
            "contained": contained,
            "suspects": suspects,
            "tracked": tracked,
            "untracked": untracked,
        })
    }

    /// The `segward policy contain` command that contains `source` on every sidecar
    /// watching this sidecar's policy folder (docs/runbook.md).
    fn fleet_command(&self, own_id: &str, source: &str, targets: usize) -> String {
        let mut reason = String::new();
        let _ = write!(
            reason,
            "probe detected by {own_id} ({targets} denied targets)"
        );
        format!(
            "segward policy contain {} --identity {} --reason {} --until 24h",
            shell_quote(&self.policy_dir.display().to_string()),
            shell_quote(source),
            shell_quote(&reason)
        )
    }
}

/// `text` as one POSIX shell word.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/:._-@%+=,".contains(&b));
    if plain {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn rfc3339(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A poisoned lock only means a panic elsewhere held it: the table is still consistent
/// (every update is one insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_quote("spiffe://example.org/ns/a"),
            "spiffe://example.org/ns/a"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
