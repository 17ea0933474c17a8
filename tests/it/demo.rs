//! `segward demo` end to end (docs/demo.md, ISSUE 7): the real binary plays the story on
//! loopback and every step is asserted — by the demo itself (exit code) and here, row by row —
//! and `--keep` leaves a fleet that answers real requests until ctrl-c.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use segward::policy::diff;
use segward::policy::{self, CompiledPolicy, Edge, PolicySource, Reach, Selector};

use crate::support::client::{PlainClient, request};

/// "in under a minute" (ISSUE 7).
const UNDER_A_MINUTE: Duration = Duration::from_secs(60);

/// The demo's rows that must say `ok`, each with the text that proves which rule decided.
const EXPECTED_ROWS: &[(&str, &str)] = &[
    ("allowed call", "frontend-creates-charges (inbound)"),
    ("cross-segment call", "default-deny (outbound)"),
    ("staging → prod", "staging-never-reaches-prod (outbound)"),
    (
        "staging blast radius",
        "0 edge(s), GET /v1/charges uncovered, sidecar 403",
    ),
    ("agent read id writes", "agent-read-is-read-only (outbound)"),
    ("agent write id writes", "agents-issue-refunds (inbound)"),
    ("path trick (%2e%2e)", "no-admin-api"),
    ("path trick (%2f)", "encoded-slash"),
    ("forged x-spiffe-id", "workload saw acme"),
    (
        "third party → ledger",
        "third-parties-never-touch-the-ledger",
    ),
    ("live revocation", "revoked (outbound)"),
    ("broken policy edit", "rejected, 200"),
    (
        "contain ns/staging/**: ci-runner → PUT staging-api/deploy",
        "200, then 403",
    ),
    (
        "contain ns/staging/**: frontend → POST payments/v1/charges",
        "3×200, then 3×200, 0 cut (payments)",
    ),
    (
        "contain ns/staging/**: agent-read → GET payments/v1/charges/ch_1",
        "3×200, then 3×200, 0 cut (payments)",
    ),
    (
        "release ns/staging/**: ci-runner → PUT staging-api/deploy",
        "removed, 200",
    ),
    (
        "probe: agent-write → GET 5 paths",
        "5×403, contained after 5 targets",
    ),
    (
        "contained: agent-write → POST payments/v1/refunds",
        "200, then 403",
    ),
    (
        "while contained: frontend → POST payments/v1/charges",
        "200, then 200",
    ),
    (
        "released (POST /probes/release): agent-write",
        "command, released, 200",
    ),
    // From audit to least privilege (docs/least-privilege.md).
    ("adopt: reports → invoices, audit mode", "4×200, would-deny"),
    (
        "adopt: policy learn from the audit log",
        "2 rule(s), 1 reach change(s)",
    ),
    ("adopt: learned rules enforced", "4×200"),
    ("adopt: policy replay of the audit log", "0 allow → deny"),
    (
        "adopt: policy unused on the shipped policy",
        "rule-wider-than-used",
    ),
];

/// The deciding rule each containment row must show.
const CONTAINMENT_RULES: &[(&str, &str)] = &[
    ("contain ns/staging/**: ci-runner", "revoked (outbound)"),
    (
        "contain ns/staging/**: frontend",
        "frontend-creates-charges (inbound)",
    ),
    (
        "contain ns/staging/**: agent-read",
        "agents-read-charges-and-entries (inbound)",
    ),
    ("release ns/staging/**", "ci-deploys-to-staging (inbound)"),
];

/// Kills the child on drop, so a failing test leaves no demo behind.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Demo {
    let child = Command::new(env!("CARGO_BIN_EXE_segward"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Demo(child)
}

#[test]
fn the_demo_plays_every_scenario_with_real_sidecars_in_under_a_minute() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_segward"))
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);

    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < UNDER_A_MINUTE,
        "{:?}",
        started.elapsed()
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    for (title, proof) in EXPECTED_ROWS {
        let row = stdout.lines().find(|l| l.contains(title));
        let row = row.unwrap_or_else(|| panic!("no row for {title}:\n{stdout}"));
        assert!(row.starts_with("ok"), "{row}");
        assert!(row.contains(proof), "{title}: {row}");
    }
    assert!(
        stdout
            .trim_end()
            .ends_with("all scenarios behaved as expected")
    );
    for (title, rule) in CONTAINMENT_RULES {
        let row = stdout.lines().find(|l| l.contains(title)).unwrap();
        assert!(row.contains(rule), "{title}: {row}");
    }
    the_blast_radius_block_is_the_reach_of_the_shipped_policy(&stdout);
    the_containment_block_is_the_reach_it_removed(&stdout);
    // Not a tty: no colour codes.
    assert!(!stdout.contains('\x1b'));
    // The scratch folder (keys included) is gone.
    let scratch = stdout
        .lines()
        .next()
        .and_then(|l| l.rsplit(" in ").next())
        .unwrap();
    assert!(!Path::new(scratch).exists(), "{scratch}");
}

/// Every identity a leaked staging token could be.
const LEAKED: &str = "spiffe://example.org/ns/staging/**";

/// The guard rail the demo's BEFORE policy lacks.
const GUARD_RAIL: &str = "  - name: staging-never-reaches-prod
    effect: deny
    from: [{ env: staging }]
    to: [{ env: prod }]
";

/// The demo's blast-radius lines say what `reach` says of `policies/fleet.yaml`, computed
/// here: with and without the guard rail (removed from the text).
fn the_blast_radius_block_is_the_reach_of_the_shipped_policy(stdout: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/fleet.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let after = policy::load(&file).unwrap();
    // Its `tests:` would fail without it; they change neither the version nor any reach.
    let bare = text.replacen(GUARD_RAIL, "", 1);
    let bare = &bare[..bare.find("\ntests:\n").unwrap()];
    assert_ne!(bare, text);
    let before = policy::from_text("fleet.yaml", bare).unwrap();
    let (after_reach, before_reach) = (leaked_reach(&after), leaked_reach(&before));

    let block: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("blast radius of a leaked staging token"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        block[0].ends_with(&format!("--from '{LEAKED}'")),
        "{stdout}"
    );
    let into_prod = |p: &CompiledPolicy, r: &Reach| {
        r.edges
            .iter()
            .filter(|e| {
                env_of(p, e, true) == Some("staging") && env_of(p, e, false) == Some("prod")
            })
            .count()
    };
    assert_eq!(into_prod(&after, &after_reach), 0);
    assert_eq!(
        block[1],
        format!(
            "  before (policy without staging-never-reaches-prod): {} edge(s), {} into prod",
            before_reach.edges.len(),
            into_prod(&before, &before_reach)
        )
    );
    assert_eq!(
        block[2],
        format!(
            "  after  (policy in force, {}): {} edge(s), 0 into prod",
            after.version(),
            after_reach.edges.len()
        )
    );
    assert!(!after_reach.edges.is_empty());
    let listed: Vec<String> = after_reach
        .edges
        .iter()
        .map(|e| {
            format!(
                "    {} → {}: {}  ({})",
                e.source.name,
                e.destination.name,
                e.requests(),
                e.allow_rules.join(", ")
            )
        })
        .collect();
    assert_eq!(block[3..3 + listed.len()], listed[..], "{stdout}");
    let no_change = diff(&before_reach, &after_reach).changes.is_empty();
    assert_eq!(
        block[3 + listed.len()].starts_with("  policy diff before → after: no change"),
        no_change,
        "{stdout}"
    );
}

/// The containment block says what `reach --from ns/staging/**` says of the shipped policy
/// with and without a `suspend_tests` containment of that pattern, computed here.
fn the_containment_block_is_the_reach_it_removed(stdout: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/fleet.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let entry = format!("revoked:\n  - {{ identity: \"{LEAKED}\", suspend_tests: true }}\n");
    let before = policy::load(&file).unwrap();
    let source =
        PolicySource::from_texts([("fleet.yaml", text.as_str()), ("contain.yaml", &entry)])
            .unwrap();
    let after = policy::compile(&source).unwrap();
    let (old, new) = (leaked_reach(&before), leaked_reach(&after));
    assert!(new.edges.is_empty() && !old.edges.is_empty());

    let block: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("containment of the leaked CI token"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        block[0].ends_with(&format!("--identity '{LEAKED}' --until 1h --suspend-tests")),
        "{stdout}"
    );
    let file_line = block[1].trim_start();
    assert!(
        file_line.starts_with("wrote policies/contain-c-"),
        "{stdout}"
    );
    assert!(
        block[2].starts_with(&format!("    - {{ identity: \"{LEAKED}\", reason: "))
            && block[2].ends_with(", suspend_tests: true }"),
        "{stdout}"
    );
    assert_eq!(
        block[3],
        format!("  hits: {}", new.revoked_sources.join(", "))
    );
    let removed: Vec<&str> = block
        .iter()
        .skip_while(|l| !l.starts_with("  removed"))
        .skip(1)
        .take_while(|l| l.starts_with("    - "))
        .copied()
        .collect();
    let changes = diff(&old, &new).changes;
    assert_eq!(removed.len(), changes.len(), "{stdout}");
    for edge in &old.edges {
        let pair = format!("    - {} → {}: ", edge.source.name, edge.destination.name);
        let line = removed.iter().find(|l| l.starts_with(&pair));
        assert!(
            line.is_some_and(|l| l.contains(&edge.requests())),
            "{pair}: {stdout}"
        );
    }
    let versions = format!("  policy {} → {}; ", before.version(), after.version());
    let line = block.iter().find(|l| l.starts_with(&versions));
    let suspended = format!("; {} test(s) suspended", after.suspended_tests().len());
    assert!(line.is_some_and(|l| l.contains(&suspended)), "{stdout}");
    assert!(!after.suspended_tests().is_empty());
    assert!(
        block
            .last()
            .unwrap()
            .ends_with(&format!("policy back to {}", before.version())),
        "{stdout}"
    );
}

fn leaked_reach(p: &CompiledPolicy) -> Reach {
    let from = Selector::parse(p, LEAKED).unwrap();
    policy::reach(p, (LEAKED, &from), ("*", &Selector::Any)).unwrap()
}

/// The `env` label of an edge's source (or destination): of its first segment carrying one.
fn env_of<'p>(p: &'p CompiledPolicy, edge: &Edge, source: bool) -> Option<&'p str> {
    let party = if source {
        &edge.source
    } else {
        &edge.destination
    };
    party.segments.iter().find_map(|name| {
        p.segments()
            .iter()
            .find(|s| &s.name == name)
            .and_then(|s| s.labels.get("env"))
            .map(String::as_str)
    })
}

#[tokio::test]
async fn demo_keep_leaves_a_fleet_that_serves_real_requests_until_ctrl_c() {
    let mut demo = spawn(&["demo", "--keep"]);
    let stdout = demo.0.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut reader = BufReader::new(stdout).lines();
        for line in reader.by_ref() {
            let line = line.unwrap();
            let done = line.contains("reloads it live");
            seen.push(line);
            if done {
                break;
            }
        }
        // Keep reading, so that the demo's last lines do not meet a closed pipe.
        std::thread::spawn(move || reader.for_each(drop));
        seen
    });
    let lines = tokio::time::timeout(UNDER_A_MINUTE, lines)
        .await
        .unwrap()
        .unwrap();
    // `curl -X POST -x http://127.0.0.1:PORT http://payments/v1/charges   # as frontend…`
    let hint = lines.iter().find(|l| l.contains("# as frontend")).unwrap();
    let proxy: std::net::SocketAddr = hint
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();

    let mut conn = PlainClient::connect(proxy).await.unwrap();
    let charge = request("POST", "http://payments/v1/charges")
        .body(Default::default())
        .unwrap();
    assert_eq!(conn.send(charge).await.unwrap().status, StatusCode::OK);

    let pid = demo.0.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo ignored ctrl-c");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
