//! The blast radius of the leaked staging token (docs/blast-radius.md, ISSUE 14): what every
//! identity a leaked staging token could be (`spiffe://example.org/ns/staging/**`) can reach,
//! BEFORE — the demo policy without its guard rail `staging-never-reaches-prod` — and AFTER —
//! the demo policy as the sidecars enforce it. Both are `reach` answers of policies compiled
//! in memory from the demo's policy text; their difference is `policy diff`'s. The demo ties
//! the AFTER answer to its `staging → prod` request: no edge from a staging class into a prod
//! segment, none covering the request the sidecar refused, and the same policy version as the
//! decision that refused it. PURE: no I/O.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::act::Row;
use crate::path::normalize;
use crate::policy::analysis::{ANY_DESTINATION, Diff, Layout, change_line, diff};
use crate::policy::{CompiledPolicy, Edge, Party, PolicySource, Reach, Selector, compile};

/// Every identity a leaked staging token could be.
pub const LEAKED: &str = "spiffe://example.org/ns/staging/**";

/// The deny rule the BEFORE policy lacks.
pub const GUARD_RAIL: &str = "staging-never-reaches-prod";

/// The boundary label, and its values on either side of the guard rail.
const BOUNDARY: (&str, &str, &str) = ("env", "staging", "prod");

/// The request the `staging → prod` step sends: (caller ID, callee ID, method, path).
const REFUSED: (&str, &str, &str, &str) = (
    "spiffe://example.org/ns/staging/sa/ci-runner",
    "spiffe://example.org/ns/prod/sa/payments",
    "GET",
    "/v1/charges",
);

/// The two answers and what the demo checks of them.
pub struct BlastRadius {
    /// BEFORE: the policy without [`GUARD_RAIL`].
    pub before: Reach,
    /// AFTER: the policy in force.
    pub after: Reach,
    /// From BEFORE to AFTER: what the guard rail takes away.
    pub diff: Diff,
    /// Edges of BEFORE from a staging class into a prod segment.
    pub before_into_prod: usize,
    /// Edges of AFTER from a staging class into a prod segment (must be none).
    pub after_into_prod: Vec<Edge>,
    /// Whether AFTER lets the refused request through (must not).
    pub after_covers_refused: bool,
}

impl BlastRadius {
    /// Computes both answers from the demo's policy text.
    ///
    /// # Errors
    /// The text, or the text without the guard rail, does not compile; the reach walk gave up.
    pub fn of(policy_text: &str) -> anyhow::Result<Self> {
        let after = compile(&PolicySource::from_texts([("fleet.yaml", policy_text)])?)
            .map_err(|e| anyhow::anyhow!("the demo policy is invalid:\n{e}"))?;
        let before = compile(&without_guard_rail(policy_text)?).map_err(|e| {
            anyhow::anyhow!("the demo policy without {GUARD_RAIL} is invalid:\n{e}")
        })?;
        let after_reach = leaked_reach(&after)?;
        let before_reach = leaked_reach(&before)?;
        let after_into_prod = into_prod(&after, &after_reach).cloned().collect();
        let before_into_prod = into_prod(&before, &before_reach).count();
        let (from, to, method, path) = REFUSED;
        let path = normalize(path).context("the refused request's path")?;
        let pair = crate::policy::reach(
            &after,
            (from, &Selector::parse(&after, from)?),
            (to, &Selector::parse(&after, to)?),
        )?;
        Ok(Self {
            diff: diff(&before_reach, &after_reach),
            before: before_reach,
            after: after_reach,
            before_into_prod,
            after_into_prod,
            after_covers_refused: pair.edges.iter().any(|e| e.covers(method, &path)),
        })
    }

    /// The printed block: BEFORE and AFTER in a line each, AFTER's edges, and the diff.
    pub fn text(&self) -> String {
        let mut out =
            format!("blast radius of a leaked staging token: policy reach --from '{LEAKED}'\n");
        let _ = writeln!(
            out,
            "  before (policy without {GUARD_RAIL}): {} edge(s), {} into prod",
            self.before.edges.len(),
            self.before_into_prod
        );
        let _ = writeln!(
            out,
            "  after  (policy in force, {}): {} edge(s), {} into prod",
            self.after.policy_version,
            self.after.edges.len(),
            self.after_into_prod.len()
        );
        for edge in &self.after.edges {
            let _ = writeln!(out, "    {}", edge_line(edge));
        }
        for revoked in &self.after.revoked_sources {
            let _ = writeln!(out, "    {revoked}: revoked, reaches nothing");
        }
        if self.diff.changes.is_empty() {
            out.push_str(
                "  policy diff before → after: no change — no allow rule grants staging \
                 anything in prod,\n    so the guard rail changes nothing today; it refuses \
                 any allow that ever does\n",
            );
        } else {
            out.push_str("  policy diff before → after (what the guard rail takes away):\n");
            for change in &self.diff.changes {
                let _ = writeln!(out, "    {}", change_line(change, Layout::Story));
            }
        }
        out
    }

    /// The demo row tying AFTER to the `staging → prod` step's request.
    pub fn row(&self, staging: &Row, refused_version: Option<&str>) -> Row {
        let same_version = refused_version == Some(self.after.policy_version.as_str());
        let reason = if same_version {
            format!(
                "reach of the refusing policy, {}",
                self.after.policy_version
            )
        } else {
            format!(
                "reach of {}, but the refusal came from {}",
                self.after.policy_version,
                refused_version.unwrap_or("no policy")
            )
        };
        let (_, _, method, path) = REFUSED;
        Row {
            what: "staging blast radius: ns/staging/** → env=prod".to_owned(),
            expected: "0 edges, above request uncovered".to_owned(),
            got: format!(
                "{} edge(s), {method} {path} {}, sidecar {}",
                self.after_into_prod.len(),
                if self.after_covers_refused {
                    "covered"
                } else {
                    "uncovered"
                },
                staging.got
            ),
            rule: staging.rule.clone(),
            reason,
            ok: self.after_into_prod.is_empty()
                && !self.after_covers_refused
                && staging.ok
                && same_version,
            request_id: staging.request_id.clone(),
        }
    }
}

/// `ci-runner+staging-workloads → payments: GET /v1/** except /v1/admin/**  (rule, …)`.
pub fn edge_line(edge: &Edge) -> String {
    let mut line = format!(
        "{} → {}: {}  ({})",
        edge.source.name,
        edge.destination.name,
        edge.requests(),
        edge.allow_rules.join(", ")
    );
    if !edge.dry_run_rules.is_empty() {
        let _ = write!(line, " [dry-run deny: {}]", edge.dry_run_rules.join(", "));
    }
    line
}

/// The demo policy's source without [`GUARD_RAIL`] (nor its `tests:`, which would fail).
fn without_guard_rail(policy_text: &str) -> anyhow::Result<PolicySource> {
    let mut source = PolicySource::from_texts([("fleet.yaml", policy_text)])?;
    let mut found = false;
    for file in &mut source.files {
        let doc = &mut file.doc;
        let before = doc.rules.len();
        doc.rules.retain(|r| r.value.name.value != GUARD_RAIL);
        found |= doc.rules.len() != before;
        doc.tests
            .retain(|t| t.value.rule.as_deref() != Some(GUARD_RAIL));
    }
    anyhow::ensure!(found, "the demo policy has no rule {GUARD_RAIL}");
    Ok(source)
}

/// Everything [`LEAKED`] can reach, to anyone.
fn leaked_reach(policy: &CompiledPolicy) -> anyhow::Result<Reach> {
    let from = Selector::parse(policy, LEAKED)?;
    Ok(crate::policy::reach(
        policy,
        (LEAKED, &from),
        ("*", &Selector::Any),
    )?)
}

/// The edges of `reach` from a staging class into a prod segment (a folded edge to every
/// destination counts: it may be one).
fn into_prod<'r>(policy: &CompiledPolicy, reach: &'r Reach) -> impl Iterator<Item = &'r Edge> {
    let (key, from, to) = BOUNDARY;
    let labelled = move |party: &Party, value: &str| {
        party.segments.iter().any(|name| {
            policy
                .segment_id(name)
                .and_then(|id| policy.segments()[id as usize].labels.get(key))
                .is_some_and(|v| v == value)
        })
    };
    reach.edges.iter().filter(move |e| {
        labelled(&e.source, from)
            && (labelled(&e.destination, to) || e.destination.name == ANY_DESTINATION)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::FLEET_POLICY;
    use crate::policy::analysis::Change;

    #[test]
    fn the_demo_policy_keeps_a_leaked_staging_token_out_of_prod() {
        let blast = BlastRadius::of(FLEET_POLICY).unwrap();
        assert!(blast.after_into_prod.is_empty());
        assert!(!blast.after_covers_refused);
        assert!(!blast.after.edges.is_empty());
        assert_ne!(blast.before.policy_version, blast.after.policy_version);
    }

    #[test]
    fn a_careless_allow_shows_what_the_guard_rail_takes_away() {
        let careless = FLEET_POLICY.replacen(
            "rules:\n",
            "rules:\n  - { name: ci-reads-everything, from: [ci-runner], to: [\"*\"], methods: [GET] }\n",
            1,
        );
        let blast = BlastRadius::of(&careless).unwrap();
        assert!(blast.after_into_prod.is_empty(), "{}", blast.text());
        assert!(blast.before_into_prod > 0, "{}", blast.text());
        assert!(
            blast
                .diff
                .changes
                .iter()
                .any(|c| c.destination == "payments" && c.change == Change::Removed),
            "{}",
            blast.text()
        );
        assert!(
            blast
                .text()
                .contains("ci-runner+staging-workloads → payments: GET /**")
        );
    }

    #[test]
    fn a_policy_without_the_guard_rail_is_refused_as_the_demo_policy() {
        let bare = FLEET_POLICY.replace(GUARD_RAIL, "some-other-deny");
        let error = BlastRadius::of(&bare).err().unwrap();
        assert!(error.to_string().contains(GUARD_RAIL), "{error}");
    }
}
