//! `segward policy slice` through the real binary (docs/fleet.md "Writing slices"): the slice
//! of each selector kind is an ordinary policy that checks and explains every request of its
//! members as the whole shipped policy does; `--per` output is byte-for-byte deterministic, a
//! one-rule change rewrites only the slices it belongs to, a slice over 1 MiB is refused with
//! nothing written, and the kustomization names the files it makes ConfigMaps of.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::cli::{Output, json, policy_dir, segward, segward_in};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Identities of the shipped fleet (and a revoked one, and one in no segment).
pub(crate) const IDS: &[&str] = &[
    "spiffe://example.org/ns/prod/sa/frontend",
    "spiffe://example.org/ns/prod/sa/payments",
    "spiffe://example.org/ns/prod/sa/ledger",
    "spiffe://example.org/ns/prod/sa/ledger-db",
    "spiffe://example.org/ns/staging/sa/ci-runner",
    "spiffe://example.org/ns/staging/sa/web",
    "spiffe://example.org/ns/prod/agent/copilot/read",
    "spiffe://example.org/ns/prod/agent/copilot/write",
    "spiffe://partner.example/integrations/acme",
    "spiffe://example.org/ns/prod/sa/legacy-batch",
    "spiffe://example.org/ns/dev/sa/nobody",
];

/// Method and path of the requests explained.
pub(crate) const REQUESTS: &[(&str, &str)] = &[
    ("GET", "/v1/charges"),
    ("POST", "/v1/refunds"),
    ("POST", "/v1/entries"),
    ("GET", "/admin/keys"),
];

/// `segward policy slice POLICY ARGS… --out OUT`, in the crate root.
fn slice(policy: &Path, args: &[&str], out: &Path) -> Output {
    let mut all = vec!["policy", "slice", policy.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap()]);
    segward(&all)
}

/// `segward policy slice policies --per GROUPING --out OUT`, run in `dir`.
pub(crate) fn per(dir: &Path, grouping: &str, out: &str) -> Output {
    let args = [
        "policy", "slice", "policies", "--per", grouping, "--out", out,
    ];
    segward_in(dir, &args)
}

/// Decision, rule and reason of one request under `policy`.
pub(crate) fn decide(policy: &Path, from: &str, to: &str, method: &str, path: &str) -> [String; 3] {
    let args = [
        "policy",
        "explain",
        policy.to_str().unwrap(),
        "--from",
        from,
        "--to",
        to,
        "--method",
        method,
        "--path",
        path,
        "--json",
    ];
    let out = segward(&args);
    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    ["decision", "rule", "reason"].map(|k| e[k].to_string())
}

/// Every file under `dir`, by relative path, with its bytes.
/// The first line of `out`'s stderr that contains `what`.
pub(crate) fn stderr_line<'a>(out: &'a Output, what: &str) -> &'a str {
    out.stderr
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no stderr line with {what:?}: {out:?}"))
}

pub(crate) fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_owned();
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn each_selector_kind_writes_a_slice_that_checks_and_decides_its_members_requests_as_the_whole() {
    let whole = Path::new(ROOT).join("policies");
    let cases: &[(&str, &[&str])] = &[
        ("spiffe://example.org/ns/prod/sa/ledger", &[IDS[2]]),
        ("spiffe://example.org/ns/staging/**", &[IDS[4], IDS[5]]),
        ("payments", &[IDS[1]]),
        ("risk=agent", &[IDS[6], IDS[7]]),
    ];
    for (sel, members) in cases {
        let out = TempDir::new().unwrap();
        let written = slice(&whole, &["--for", sel], out.path());
        assert_eq!(written.code, 0, "{sel}: {written:?}");
        let check = segward(&["policy", "check", out.path().to_str().unwrap()]);
        assert_eq!(check.code, 0, "{sel}: {check:?}");
        let text = fs::read_to_string(out.path().join("fleet.yaml")).unwrap();
        assert!(text.starts_with(&format!("# segward policy slice for {sel}\n")));
        for member in *members {
            for other in IDS {
                for (method, path) in REQUESTS {
                    for (from, to) in [(member, other), (other, member)] {
                        assert_eq!(
                            decide(out.path(), from, to, method, path),
                            decide(&whole, from, to, method, path),
                            "{sel}: {method} {path} from {from} to {to}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_slice_keeps_fewer_rules_than_the_whole_and_refuses_selectors_naming_nothing_or_its_source() {
    let whole = Path::new(ROOT).join("policies");
    let out = TempDir::new().unwrap();

    let written = slice(&whole, &["--for", "ci-runner"], out.path());
    assert_eq!(written.code, 0, "{written:?}");
    assert!(written.stdout.contains("4 of 11 rules"), "{written:?}");

    for bad in ["no-such-segment", "nolabel=x", "*"] {
        let refused = slice(&whole, &["--for", bad], &out.path().join("x"));
        assert_eq!(refused.code, 2, "{bad}: {refused:?}");
        assert!(!out.path().join("x").exists());
    }
    let refused = slice(&whole, &["--per", "nolabel"], &out.path().join("x"));
    assert_eq!(refused.code, 2, "{refused:?}");

    let fleet = fs::read_to_string(whole.join("fleet.yaml")).unwrap();
    let dir = policy_dir(&[("policies/fleet.yaml", &fleet)]);
    let args = [
        "policy", "slice", "policies", "--for", "payments", "--out", "policies",
    ];
    let refused = segward_in(dir.path(), &args);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert_eq!(
        fs::read_to_string(dir.path().join("policies/fleet.yaml")).unwrap(),
        fleet
    );
}

#[test]
fn per_namespace_twice_writes_identical_bytes_and_a_kustomization_of_existing_files() {
    let whole = Path::new(ROOT).join("policies");
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());

    let first = slice(&whole, &["--per", "namespace"], a.path());
    let second = slice(&whole, &["--per", "namespace"], b.path());
    let again = slice(&whole, &["--per", "namespace"], a.path());

    assert_eq!(
        (first.code, second.code, again.code),
        (0, 0, 0),
        "{first:?}"
    );
    assert_eq!(tree(a.path()), tree(b.path()));
    assert_eq!(
        first
            .stdout
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["GROUP", "RULES", "BYTES", "YAML"]
    );
    let groups: Vec<&str> = first
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(&groups[..3], ["other", "prod", "staging"]);
    for group in ["other", "prod", "staging"] {
        let dir = a.path().join(group);
        let check = segward(&["policy", "check", dir.to_str().unwrap()]);
        assert_eq!(check.code, 0, "{group}: {check:?}");
    }
    let kustomization = fs::read_to_string(a.path().join("kustomization.yaml")).unwrap();
    let parsed: Value = serde_saphyr::from_str(&kustomization).unwrap();
    let maps = parsed["configMapGenerator"].as_array().unwrap();
    let names: Vec<&str> = maps.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "segward-policy-other",
            "segward-policy-prod",
            "segward-policy-staging"
        ]
    );
    for map in maps {
        for file in map["files"].as_array().unwrap() {
            assert!(a.path().join(file.as_str().unwrap()).is_file(), "{file}");
        }
    }
    rendered(a.path(), 3);
}

/// Renders the kustomization with the venv's kubectl of scripts/validate-k8s.sh when it was
/// made (nothing otherwise: the parse above stands).
pub(crate) fn rendered(dir: &Path, config_maps: usize) -> String {
    let kubectl = Path::new(ROOT).join("target/k8s-validate/bin/kubectl");
    if !kubectl.is_file() {
        return String::new();
    }
    let out = Command::new(kubectl)
        .args(["kustomize"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.matches("kind: ConfigMap").count(),
        config_maps,
        "{text}"
    );
    text
}

#[test]
fn a_one_rule_change_rewrites_only_the_slices_holding_that_rule() {
    let fleet = fs::read_to_string(Path::new(ROOT).join("policies/fleet.yaml")).unwrap();
    let dir = policy_dir(&[("policies/fleet.yaml", &fleet)]);
    let run = |out: &str| per(dir.path(), "namespace", out);
    assert_eq!(run("before").code, 0);
    let old = "methods: [GET, POST]\n    paths: [\"/v1/entries\"";
    assert_eq!(fleet.matches(old).count(), 1);
    let changed = fleet.replace(old, "methods: [POST]\n    paths: [\"/v1/entries\"");
    fs::write(dir.path().join("policies/fleet.yaml"), changed).unwrap();

    assert_eq!(run("after").code, 0);

    let (before, after) = (
        tree(&dir.path().join("before")),
        tree(&dir.path().join("after")),
    );
    let differ: Vec<_> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    assert_eq!(differ, [Path::new("prod/fleet.yaml")]);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_slice_over_one_mebibyte_is_refused_naming_its_group_and_nothing_is_written() {
    let big = crate::slice_gzip::big(|_| "x".repeat(240));
    let dir = policy_dir(&[("policies/big.yaml", &big)]);
    let args = [
        "policy",
        "slice",
        "policies",
        "--per",
        "namespace",
        "--out",
        "out",
        "--gzip",
        "never",
    ];

    let out = segward_in(dir.path(), &args);

    assert_eq!(out.code, 1, "{out:?}");
    let line = stderr_line(&out, "group big");
    let bytes: usize = line
        .split(" is ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes > 1024 * 1024, "{line}");
    assert!(!out.stderr.contains("group small"), "{out:?}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn hostile_names_and_label_values_are_copied_as_written_and_get_safe_folder_names() {
    let policy = "segments:\n  '..':\n    identities: [\"spiffe://example.org/ns/a/sa/x\"]\n    labels: { team: \"../x: #y\" }\n  Web_Tier:\n    identities: [\"spiffe://example.org/ns/b/sa/y\"]\nrules:\n  - name: r.1\n    description: \"a: b # c\\n- name: forged\"\n    from: ['..']\n    to: [Web_Tier]\ntests:\n  - { from: spiffe://example.org/ns/a/sa/x, to: spiffe://example.org/ns/b/sa/y, expect: allow, rule: r.1 }\n";
    let dir = policy_dir(&[("policies/p.yaml", policy)]);

    for grouping in ["segment", "team"] {
        let out = per(dir.path(), grouping, grouping);

        assert_eq!(out.code, 0, "{out:?}");
        let written = tree(&dir.path().join(grouping));
        assert_eq!(written.len(), 3, "{:?}", written.keys());
        for (path, bytes) in &written {
            assert!(
                !path.components().any(|c| c.as_os_str() == ".."),
                "{path:?}"
            );
            let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
                continue;
            };
            let slice = String::from_utf8(bytes.clone()).unwrap();
            assert!(
                slice.contains("    description: \"a: b # c\\n- name: forged\"\n"),
                "{slice}"
            );
            let folder = dir.path().join(grouping).join(folder);
            let check = segward(&["policy", "check", folder.to_str().unwrap()]);
            assert_eq!(check.code, 0, "{check:?}");
            assert!(check.stdout.contains("1 rules"), "{check:?}");
        }
    }
}

/// A fresh Ed25519 key pair from `segward certs signing-key`: its folder, private and public
/// key files.
pub(crate) fn signing_keys() -> (TempDir, PathBuf, PathBuf) {
    let keys = TempDir::new().unwrap();
    let made = segward(&[
        "certs",
        "signing-key",
        "--out",
        keys.path().to_str().unwrap(),
    ]);
    assert_eq!(made.code, 0, "{made:?}");
    let (key, public) = (
        keys.path().join("signing.key"),
        keys.path().join("signing.pub"),
    );
    (keys, key, public)
}

/// Slices signed as they are written (`--sign`): each group folder carries a `policy.sig`
/// that `policy check --verify-key` accepts, the kustomization puts it in the group's
/// ConfigMap, and a slice edited after signing is refused.
#[test]
fn slices_signed_as_written_verify_and_an_edit_after_signing_is_refused() {
    let (_keys, key, public) = signing_keys();
    let whole = Path::new(ROOT).join("policies");
    let out = TempDir::new().unwrap();

    let sliced = slice(
        &whole,
        &["--per", "namespace", "--sign", key.to_str().unwrap()],
        out.path(),
    );

    assert_eq!(sliced.code, 0, "{sliced:?}");
    let verify = |dir: &Path| {
        let (dir, public) = (dir.to_str().unwrap(), public.to_str().unwrap());
        segward(&["policy", "check", dir, "--verify-key", public]).code
    };
    for group in ["other", "prod", "staging"] {
        let dir = out.path().join(group);
        assert!(dir.join("policy.sig").is_file(), "{group}");
        assert_eq!(verify(&dir), 0, "{group}");
    }
    let kustomization = fs::read_to_string(out.path().join("kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("\"prod/policy.sig\""),
        "{kustomization}"
    );
    let prod = out.path().join("prod");
    let file = fs::read_dir(&prod)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "yaml"))
        .unwrap();
    let text = fs::read_to_string(&file).unwrap();
    fs::write(&file, format!("{text}\n# edited after signing\n")).unwrap();
    assert_eq!(verify(&prod), 1, "an edited slice must not verify");
}

/// The fenced block right after the line `marker` in `page`.
fn block_after(page: &str, marker: &str) -> String {
    let rest = &page[page.find(marker).unwrap() + marker.len()..];
    let body = rest.split_once("```yaml\n").unwrap().1;
    body.split_once("```\n").unwrap().0.to_owned()
}

#[test]
fn the_compact_segment_docs_fleet_shows_is_what_slice_writes_and_it_decides_as_the_whole() {
    let page = fs::read_to_string(Path::new(ROOT).join("docs/fleet.md")).unwrap();
    let policy = block_after(&page, "<!-- file: guard/policy.yaml -->");
    let excerpt = block_after(&page, "<!-- slice excerpt: guard-orders/policy.yaml -->");
    let dir = policy_dir(&[("guard/policy.yaml", &policy)]);
    let out = dir.path().join("orders");

    let written = slice(&dir.path().join("guard"), &["--for", "orders"], &out);

    assert_eq!(written.code, 0, "{written:?}");
    let text = fs::read_to_string(out.join("policy.yaml")).unwrap();
    assert!(text.contains(&excerpt), "{text}");
    // The three staging segments are one; the rule-named ones stay as written.
    assert!(
        !text.contains("  ci:") && text.contains("  checkout:"),
        "{text}"
    );
    let orders = "spiffe://shop.example/ns/prod/sa/orders";
    let peers = [
        "spiffe://shop.example/ns/staging/sa/ci",
        "spiffe://shop.example/ns/staging/preview/pr-7",
        "spiffe://shop.example/ns/staging/preview/pr-7/deeper",
        "spiffe://shop.example/ns/prod/sa/checkout",
        "spiffe://shop.example/ns/staging/sa/stranger",
    ];
    let whole = dir.path().join("guard");
    for peer in peers {
        for (from, to) in [(peer, orders), (orders, peer)] {
            assert_eq!(
                decide(&out, from, to, "GET", "/v1/orders"),
                decide(&whole, from, to, "GET", "/v1/orders"),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn the_slice_of_a_slice_for_the_same_identity_is_that_slice_byte_for_byte() {
    // `{ env: staging }` faces any peer of orders: ci and preview become one synthesized
    // segment, which slicing the slice again keeps as written (what a sidecar relies on to
    // compile its own slice folder from the parts it checked).
    let policy = r#"
segments:
  orders: { identities: ["spiffe://shop.example/ns/prod/sa/orders"], labels: { env: prod } }
  ci: { identities: ["spiffe://shop.example/ns/staging/sa/ci"], labels: { env: staging, tier: batch } }
  preview: { identities: ["spiffe://shop.example/ns/staging/preview/*"], labels: { env: staging } }
  web: { identities: ["spiffe://shop.example/ns/prod/sa/web"], labels: { env: prod } }
rules:
  - { name: staging-never-prod, effect: deny, from: [{ env: staging }], to: [{ env: prod }] }
  - { name: web-to-orders, from: [web], to: [orders] }
tests:
  - { from: "spiffe://shop.example/ns/prod/sa/web", to: "spiffe://shop.example/ns/prod/sa/orders", expect: allow }
"#;
    let dir = policy_dir(&[("whole/policy.yaml", policy)]);
    let own = "spiffe://shop.example/ns/prod/sa/orders";
    let once = dir.path().join("once");
    let twice = dir.path().join("twice");
    let written = slice(&dir.path().join("whole"), &["--for", own], &once);
    assert_eq!(written.code, 0, "{written:?}");
    let first = fs::read_to_string(once.join("policy.yaml")).unwrap();
    assert!(first.contains("slice.env.staging:"), "{first}");
    let written = slice(&once, &["--for", own], &twice);
    assert_eq!(written.code, 0, "{written:?}");
    assert_eq!(
        fs::read_to_string(twice.join("policy.yaml")).unwrap(),
        first
    );
    for peer in [
        "spiffe://shop.example/ns/staging/preview/x",
        "spiffe://shop.example/ns/prod/sa/web",
    ] {
        assert_eq!(
            decide(&twice, peer, own, "GET", "/"),
            decide(&dir.path().join("whole"), peer, own, "GET", "/"),
            "{peer}"
        );
    }
}
