//! How a logged decision compares with today's (docs/operations.md): same or changed decision,
//! same or changed policy version, and whether the line was written under `mode: audit`.

use serde_json::{Value, json};

use super::log_line::LogLine;
use crate::policy::Verdict;

/// A logged decision beside today's.
pub(super) struct Comparison<'l, 'p> {
    line: &'l LogLine,
    /// The line was written under `mode: audit` (a would-deny not made by a dry_run rule), so
    /// today's verdict is audited before comparing.
    audit: bool,
    /// Today's verdict as compared.
    now: Verdict<'p>,
    decision_changed: bool,
    /// `None` when the line records no policy_version.
    policy_changed: Option<bool>,
}

impl<'l, 'p> Comparison<'l, 'p> {
    /// Compares `line` with today's `verdict` under the policy `version`.
    pub(super) fn new(line: &'l LogLine, verdict: Verdict<'p>, version: &str) -> Self {
        let audit = line.decision.as_deref() == Some("would-deny")
            && line.reason.as_deref() != Some("dry-run-deny");
        let now = if audit { verdict.audited() } else { verdict };
        let decision_changed = line.decision.as_deref() != Some(now.decision.as_str())
            || line.rule.as_deref() != now.rule
            || line.reason.as_deref() != Some(now.reason.as_str());
        Self {
            line,
            audit,
            now,
            decision_changed,
            policy_changed: line.policy_version.as_deref().map(|v| v != version),
        }
    }

    /// One plain sentence: did the decision change, and did the policy.
    fn summary(&self) -> &'static str {
        match (self.decision_changed, self.policy_changed) {
            (false, Some(false)) => "unchanged: same decision under the same policy version",
            (false, Some(true)) => {
                "same decision, but the policy changed since the line was logged"
            }
            (false, None) => "same decision; the line records no policy_version",
            (true, Some(true)) => {
                "CHANGED: the policy changed since the line was logged, and so did the decision"
            }
            (true, Some(false)) => {
                "CHANGED: the decision differs under the same policy version \
                 (another segward build, or an edited line)"
            }
            (true, None) => "CHANGED: the decision differs; the line records no policy_version",
        }
    }

    /// The `request id`, `logged`, `now` and `compared` lines of the text output.
    pub(super) fn text(&self, version: &str) -> String {
        let l = self.line;
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut context = vec![or_dash(&l.direction)];
        context.extend(l.status.map(|s| format!("status {s}")));
        context.extend(l.at.as_ref().map(|at| format!("at {at}")));
        let logged = describe(
            &or_dash(&l.decision),
            l.rule.as_deref(),
            &or_dash(&l.reason),
        );
        let now = describe(
            self.now.decision.as_str(),
            self.now.rule,
            self.now.reason.as_str(),
        );
        let audit = if self.audit {
            ", in mode: audit as logged"
        } else {
            ""
        };
        format!(
            "request id:     {} ({})\nlogged:         {logged} under policy {}\n\
             now:            {now} under policy {version}{audit}\ncompared:       {}\n",
            or_dash(&l.request_id),
            context.join(", "),
            or_dash(&l.policy_version),
            self.summary(),
        )
    }

    /// The `logged`, `now`, `audit_mode`, `*_changed` and `comparison` fields of `--json`.
    pub(super) fn json(&self) -> Value {
        let l = self.line;
        json!({
            "logged": {
                "request_id": l.request_id,
                "direction": l.direction,
                "decision": l.decision,
                "rule": l.rule,
                "reason": l.reason,
                "policy_version": l.policy_version,
                "status": l.status,
                "at": l.at,
            },
            "now": {
                "decision": self.now.decision.as_str(),
                "rule": self.now.rule,
                "reason": self.now.reason.as_str(),
            },
            "audit_mode": self.audit,
            "decision_changed": self.decision_changed,
            "policy_changed": self.policy_changed,
            "comparison": self.summary(),
        })
    }
}

/// `deny (rule X, reason deny-rule)`, or `deny (reason default-deny)` when no rule decided.
fn describe(decision: &str, rule: Option<&str>, reason: &str) -> String {
    match rule {
        Some(rule) => format!("{decision} (rule {rule}, reason {reason})"),
        None => format!("{decision} (reason {reason})"),
    }
}
