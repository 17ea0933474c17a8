//! The lints of exceptions that run out (docs/runbook.md): `rule-expired`, `rule-expiring`,
//! `revocation-lifted`, and `test-suspended` for a test a containment keeps from running.

use super::{Lint, finding};
use crate::policy::compiled::{CompiledPolicy, Rule};
use crate::policy::validate::format_time;

/// `rule-expired` (an `expires:` passed: the rule matches nothing; delete it) and
/// `rule-expiring` (it stops matching within `within` seconds: renew or let it go), as of the
/// instant the policy was compiled for; likewise `revocation-lifted` for a `revoked:` entry
/// past its `until`.
pub(super) fn expiries(policy: &CompiledPolicy, within: i64, out: &mut Vec<Lint>) {
    let now = policy.compiled_for();
    for rule in policy.rules() {
        let Some(t) = rule.expires else { continue };
        let when = format_time(t);
        let who = exception_owner(rule);
        if rule.expired {
            let msg = format!(
                "rule `{}`{who} expired at {when} and matches nothing; delete it",
                rule.name
            );
            out.push(finding(policy, "rule-expired", rule.at, msg));
        } else if t - now <= within {
            let msg = format!(
                "rule `{}`{who} expires at {when} (in {}); renew it or let it go",
                rule.name,
                human(t - now)
            );
            out.push(finding(policy, "rule-expiring", rule.at, msg));
        }
    }
    for (at, scope) in policy.suspended_tests() {
        out.push(Lint {
            kind: "test-suspended",
            at: at.clone(),
            message: format!(
                "this test is suspended while containment `{scope}` (suspend_tests) revokes its source"
            ),
        });
    }
    for entry in policy.revocations().iter().filter(|r| r.lifted) {
        let when = entry.until.map(format_time).unwrap_or_default();
        let msg = format!(
            "revoked `{}` lifted itself at {when} and revokes nothing; delete the entry",
            entry.scope
        );
        out.push(finding(policy, "revocation-lifted", entry.at, msg));
    }
}

/// ` (owner ana, ticket SEC-7)`, or nothing.
fn exception_owner(rule: &Rule) -> String {
    let parts: Vec<String> = [("owner", &rule.owner), ("ticket", &rule.ticket)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `3d 4h`, `5h 12m`, `40m`, `20s`.
fn human(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}
