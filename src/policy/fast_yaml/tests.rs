#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use super::*;
use crate::policy::load::parse_doc;
use crate::policy::source::{RevokedDoc, SelectorDoc};

/// The fast path takes `text`, and serde-saphyr reads the same document.
#[track_caller]
fn fast(text: &str) {
    assert_eq!(check_against_saphyr(text), Ok(true), "{text}");
}

/// The fast path leaves `text` to serde-saphyr (and does not disagree with it).
#[track_caller]
fn left(text: &str) {
    assert_eq!(check_against_saphyr(text), Ok(false), "{text}");
}

const RULE: &str = "rules:\n  - name: a\n    from: [web]\n    to: [api]\n";

#[test]
fn the_block_yaml_operators_write_takes_the_fast_path_with_serde_saphyrs_values() {
    for text in [
        "",
        "# only a comment\n\n",
        RULE,
        // no final newline, comments everywhere, blank lines
        "rules: # the rules\n\n  # first\n  - name: a # its name\n    from: [web]   # who\n    to: [api]",
        // a sequence at its key's indent, items on their own lines, nested block maps
        "segments:\n  web:\n    identities:\n    - spiffe://example.org/ns/prod/sa/web\n    - \"spiffe://example.org/ns/prod/**\"\n    labels:\n      env: prod\n      tier: 1\n      pci: true\n",
        // flow maps in flow sequences, quoted keys and values, escapes
        "rules:\n  - name: 'it''s'\n    \"from\": [{ env: prod }, \"*\", 'b']\n    to: [{env: staging, tier: web}]\n    methods: [GET, POST]\n    paths: [\"/a/\\\"q\\\"\", /v1/charges/*]\n    description: a, b [c] {d} e:f g#h\n    dry_run: true\n    effect: deny\n",
        // an item whose map starts on the next line; an empty optional value
        "rules:\n  -\n    name: a\n    from: [web]\n    to: [api]\n    description:\n    expires: 2026-12-01T00:00:00Z\n",
        // revoked: plain and map entries; tests
        "revoked:\n  - spiffe://example.org/ns/prod/sa/old\n  - { segment: web, reason: incident 42 }\n  - identity: spiffe://example.org/x\n    until: 2027-01-01T00:00:00Z\ntests:\n  - { from: \"spiffe://a.org/x\", to: 'spiffe://a.org/y', expect: allow }\n  - from: \"spiffe://a.org/x\"\n    to: \"spiffe://a.org/y\"\n    method: POST\n    expect: would-deny\n",
        // flow collections over several lines, with comments; URLs in flow
        "tests:\n  - { from: spiffe://a.org/x, to: \"spiffe://a.org/y\", # who\n\n      method: GET, expect: deny }\nrevoked: [spiffe://a.org/z]\n",
        // non-ASCII: columns count characters
        "segments:\n  café:\n    description: \"naïve ☕\"\n    identities: [\"spiffe://é.org/x\"]\n",
    ] {
        fast(text);
    }
}

#[test]
fn what_the_subset_does_not_cover_is_left_to_serde_saphyr() {
    for text in [
        "---\nrules: []\n",                                            // document marker
        "rules:\n\t- name: a\n",                                       // tab
        "rules:\r\n  - name: a\r\n",                                   // CRLF
        "segments:\n  a: &x\n    identities: [a]\n  b: *x\n",          // anchor, alias
        "rules:\n  - name: !!str a\n    from: [web]\n    to: [api]\n", // tag
        "rules:\n  - name: a\n    description: |\n      text\n    from: [web]\n    to: [api]\n",
        "rules:\n  - name: a\n    description: two\n      lines\n    from: [web]\n    to: [api]\n",
        "rules:\n  - name: a\n    from: [web,\n    db]\n    to: [api]\n", // flow not deeper
        "rules:\n  - name: a\n    from: [web]\n    from: [db]\n    to: [api]\n", // duplicate key
        "segments:\n  a: {identities: [a]}\n  a: {identities: [b]}\n",    // duplicate segment
        "segments:\n  <<: {identities: [a]}\n",                           // merge key
        "rules:\n  - name: 12\n    from: [web]\n    to: [api]\n",         // a number for a string
        "rules:\n  - name: yes\n    from: [web]\n    to: [api]\n",        // a YAML 1.1 boolean
        "rules:\n  - name: a\n    from: [web]\n    to: [api]\n    dry_run: \"true\"\n",
        "rules:\n  - name: a\n    from: [web:]\n    to: [api]\n", // `:` ending a flow plain
        "rules:\n  - name: a\n    from: [web]\n    to: [api,]\n", // trailing comma
        "rules:\n  - name: \"\\u0041\"\n    from: [web]\n    to: [api]\n", // an escape not taken
        "rules:\n  - - a\n",                                      // nested sequence inline
        "? rules\n: []\n",                                        // explicit key
        "rules:\n  - name: a\n    from: [web]\n    to: [api]\n   bad: 1\n", // odd indent
    ] {
        left(text);
    }
}

#[test]
fn errors_come_from_serde_saphyr_with_file_line_and_column_as_before() {
    for (text, at) in [
        // an unknown key, a missing field, a wrong type, a syntax error
        (
            "rules:\n  - name: a\n    form: [web]\n    to: [api]\n",
            "p.yaml:3:5",
        ),
        ("rules:\n  - name: a\n    to: [api]\n", "p.yaml:3:5"),
        (
            "rules:\n  - name: a\n    from: x\n    to: [api]\n",
            "p.yaml:3:11",
        ),
        ("rules:\n  - name: [a\n", "p.yaml:"),
        (
            "segments:\n  a: {identities: [a]}\n  a: {identities: [b]}\n",
            "p.yaml:3:",
        ),
    ] {
        let fast = parse_doc("p.yaml", text).unwrap_err().to_string();
        let saphyr = parse_with_saphyr(text).unwrap_err();
        assert!(fast.starts_with(at), "{fast}");
        let message = saphyr.without_snippet().to_string();
        let first = message.split(" at line ").next().unwrap();
        assert!(fast.contains(first), "{fast} vs {message}");
    }
}

#[test]
fn spans_values_and_shapes_are_serde_saphyrs() {
    let text = "rules:\n  - name: a\n    from: [{ env: prod, tier: 1 }, web]\n    to: [\"*\"]\n";
    let doc = parse::<Option<PolicyDoc>>(text).unwrap().unwrap();
    let rule = &doc.rules[0];
    assert_eq!((rule.referenced.line(), rule.referenced.column()), (2, 5));
    let from = &rule.value.from;
    assert_eq!((from.referenced.line(), from.referenced.column()), (3, 11));
    let SelectorDoc::Labels(labels) = &from.value[0].value else {
        panic!("{from:?}")
    };
    assert_eq!(labels.get("tier").map(String::as_str), Some("1"));
    assert!(matches!(&from.value[1].value, SelectorDoc::Name(n) if n == "web"));
    for text in [
        "revoked: [spiffe://a.org/x]\n",
        "revoked:\n  - spiffe://a.org/x\n",
    ] {
        let doc = parse::<Option<PolicyDoc>>(text).unwrap().unwrap();
        assert!(matches!(&doc.revoked[0].value, RevokedDoc::Plain(p) if p == "spiffe://a.org/x"));
    }
}

#[test]
fn every_policy_file_and_yaml_example_of_the_repository_agrees_with_serde_saphyr() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = Vec::new();
    for file in files(root) {
        let read = || std::fs::read_to_string(&file).unwrap();
        match file.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => texts.push((file.display().to_string(), read())),
            Some("md") => {
                for (i, block) in yaml_blocks(&read()).into_iter().enumerate() {
                    texts.push((format!("{} block {i}", file.display()), block));
                }
            }
            _ => {}
        }
    }
    assert!(texts.len() > 50, "{} texts", texts.len());
    let mut taken = 0;
    for (name, text) in &texts {
        match check_against_saphyr(text) {
            Ok(fast) => taken += usize::from(fast),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    // Most policies are in the subset; the demo policy must be.
    assert!(taken * 3 > texts.len(), "{taken} of {}", texts.len());
    let demo = std::fs::read_to_string(root.join("policies/fleet.yaml")).unwrap();
    fast(&demo);
}

/// Every file under `dir` but build output and VCS metadata.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The bodies of the ```` ```yaml ```` blocks of a markdown text.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```yaml") || fence.starts_with("```yml") => {
                current = Some(String::new());
            }
            Some(block) if fence.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}
