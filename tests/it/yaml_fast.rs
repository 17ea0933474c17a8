//! The fast YAML path (docs/performance.md, "Fleet-scale policy") against serde-saphyr: on
//! generated policy documents in every style the subset covers and many it does not, on
//! those documents with random edits, and on the bench fleet, whatever the fast path accepts
//! serde-saphyr accepts with the same document — values, lines and columns.
//!
//! A longer campaign: `SEGWARD_YAML_CASES=20000 cargo test --test it yaml_fast`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use segward::policy::fast_yaml::check_against_saphyr;

// Also loaded by `slice_fleet`; each story keeps its own copy of the generator.
#[path = "../../benches/fleet/mod.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod fleet;

/// A YAML node with the style it is written in.
#[derive(Debug, Clone)]
enum Node {
    /// Text and quoting: 0 plain, 1 single, 2 double.
    Scalar(String, u8),
    Seq(Vec<Node>, bool),
    Map(Vec<(String, u8, Node)>, bool),
}

/// Scalars a policy holds.
const WORDS: &[&str] = &[
    "a",
    "web",
    "svc-1",
    "prod",
    "staging",
    "my seg",
    "GET",
    "POST",
    "deny",
    "allow",
    "would-deny",
    "true",
    "false",
    "spiffe://a.org/ns/prod/sa/web",
    "spiffe://a.org/ns/**",
    "*",
    "/v1/charges/*",
    "2026-12-01T00:00:00Z",
    "1",
    "café ☕",
    "it's",
    "say \"hi\"",
];

/// Scalars that trip YAML: keywords, numbers, indicators, `: ` and ` #` inside, quotes.
const TRICKY: &[&str] = &[
    "yes",
    "No",
    "null",
    "~",
    "",
    "007",
    "-1",
    "1.5",
    "0x1F",
    "1e3",
    ".inf",
    "2026-12-01",
    "12:30",
    "/a b",
    "a#b",
    "a #b",
    "a: b",
    "a:b",
    "back\\slash",
    "*x",
    "&a",
    "!t",
    "-x",
    "- x",
    "? x",
    "[x]",
    "{x}",
    "x,y",
    "@x",
    "`x",
    "%x",
    "|",
    ">",
    "<<",
    "a ",
    "a:",
    "x:]",
];

const RULE_KEYS: &[&str] = &[
    "name",
    "effect",
    "from",
    "to",
    "methods",
    "paths",
    "dry_run",
    "description",
    "expires",
    "owner",
    "ticket",
    "reason",
    "bogus",
];

fn scalar() -> impl Strategy<Value = Node> {
    let word = prop_oneof![6 => prop::sample::select(WORDS), 1 => prop::sample::select(TRICKY)];
    (word, 0u8..3).prop_map(|(w, q)| Node::Scalar(w.to_owned(), q))
}

fn list(flow: bool) -> impl Strategy<Value = Node> {
    (vec(scalar(), 0..4), any::<bool>()).prop_map(move |(items, f)| Node::Seq(items, f || flow))
}

fn selectors() -> impl Strategy<Value = Node> {
    let label = (prop::sample::select(&["env", "tier", "pci"][..]), scalar());
    let one = prop_oneof![
        3 => scalar(),
        1 => vec(label, 0..3).prop_map(|ls| Node::Map(
            ls.into_iter().map(|(k, v)| (k.to_owned(), 0, v)).collect(), true)),
    ];
    (vec(one, 0..3), any::<bool>()).prop_map(|(items, f)| Node::Seq(items, f))
}

fn rule() -> impl Strategy<Value = Node> {
    let entry = prop::sample::select(RULE_KEYS).prop_flat_map(|k| {
        let value = match k {
            "from" | "to" => selectors().boxed(),
            "methods" | "paths" => list(false).boxed(),
            _ => scalar().boxed(),
        };
        (Just(k.to_owned()), 0u8..3, value)
    });
    (vec(entry, 1..7), any::<bool>()).prop_map(|(mut es, flow)| {
        // Mostly the fields a rule needs, so that many documents are valid.
        for (k, v) in [("name", "r"), ("from", "a"), ("to", "b")] {
            if !es.iter().any(|(key, _, _)| key == k) {
                let node = Node::Scalar(v.to_owned(), 0);
                let node = if k == "name" {
                    node
                } else {
                    Node::Seq(vec![node], true)
                };
                es.push((k.to_owned(), 0, node));
            }
        }
        Node::Map(es, flow)
    })
}

fn segment() -> impl Strategy<Value = (String, u8, Node)> {
    let labels = vec((prop::sample::select(&["env", "tier"][..]), scalar()), 0..3);
    (scalar(), list(false), labels, any::<bool>(), any::<bool>()).prop_map(
        |(name, ids, labels, flow, lflow)| {
            let Node::Scalar(name, q) = name else {
                unreachable!()
            };
            let labels = labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), 0, v))
                .collect();
            let body = vec![
                ("identities".to_owned(), 0, ids),
                ("labels".to_owned(), 0, Node::Map(labels, lflow)),
            ];
            (name, q, Node::Map(body, flow))
        },
    )
}

fn document() -> impl Strategy<Value = Node> {
    (
        vec(segment(), 0..4),
        vec(rule(), 0..4),
        list(false),
        any::<bool>(),
    )
        .prop_map(|(segments, rules, revoked, flow)| {
            Node::Map(
                vec![
                    ("segments".to_owned(), 0, Node::Map(segments, false)),
                    ("rules".to_owned(), 0, Node::Seq(rules, flow)),
                    ("revoked".to_owned(), 0, revoked),
                ],
                false,
            )
        })
}

/// How a document is laid out: indent width, sequences at their key's indent, comments.
#[derive(Debug, Clone, Copy)]
struct Layout {
    width: usize,
    compact: bool,
    comments: bool,
}

fn quote(text: &str, style: u8) -> String {
    match style {
        1 => format!("'{}'", text.replace('\'', "''")),
        2 => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
        _ => text.to_owned(),
    }
}

fn flow(node: &Node) -> String {
    match node {
        Node::Scalar(text, q) => quote(text, *q),
        Node::Seq(items, _) => {
            format!(
                "[{}]",
                items.iter().map(flow).collect::<Vec<_>>().join(", ")
            )
        }
        Node::Map(entries, _) => {
            let body: Vec<_> = entries
                .iter()
                .map(|(k, q, v)| format!("{}: {}", quote(k, *q), flow(v)))
                .collect();
            format!("{{ {} }}", body.join(", "))
        }
    }
}

/// Block layout at `indent`; flow for what asks for it, or is empty.
fn block(node: &Node, indent: usize, layout: Layout, out: &mut String) {
    let pad = " ".repeat(indent);
    let comment = if layout.comments { " # note" } else { "" };
    match node {
        Node::Map(entries, false) if !entries.is_empty() => {
            for (k, q, v) in entries {
                out.push_str(&format!("{pad}{}:", quote(k, *q)));
                match v {
                    Node::Seq(items, false) if !items.is_empty() => {
                        out.push_str(&format!("{comment}\n"));
                        let at = if layout.compact {
                            indent
                        } else {
                            indent + layout.width
                        };
                        block(v, at, layout, out);
                    }
                    Node::Map(es, false) if !es.is_empty() => {
                        out.push('\n');
                        block(v, indent + layout.width, layout, out);
                    }
                    _ => out.push_str(&format!(" {}{comment}\n", flow(v))),
                }
            }
        }
        Node::Seq(items, false) if !items.is_empty() => {
            for item in items {
                match item {
                    Node::Map(es, false) if !es.is_empty() => {
                        // The first entry on the dash's line, the rest under it.
                        let mut inner = String::new();
                        block(item, indent + 2, layout, &mut inner);
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                    Node::Seq(is, false) if !is.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        block(item, indent + 2, layout, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}{comment}\n", flow(item))),
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", flow(node))),
    }
}

fn render(node: &Node, layout: Layout) -> String {
    let mut out = String::from("# generated\n");
    block(node, 0, layout, &mut out);
    out
}

fn layout() -> impl Strategy<Value = Layout> {
    (1usize..5, any::<bool>(), any::<bool>()).prop_map(|(width, compact, comments)| Layout {
        width,
        compact,
        comments,
    })
}

/// Cases per property: `SEGWARD_YAML_CASES`, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("SEGWARD_YAML_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[test]
fn generated_documents_read_the_same_on_both_paths() {
    let mut runner = TestRunner::new(Config::with_cases(cases(1000)));
    let (taken, total) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&(document(), layout()), |(doc, layout)| {
            let text = render(&doc, layout);
            let fast = check_against_saphyr(&text)
                .map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
            // Counted over the documents serde-saphyr reads: the others go to it by design.
            if segward::policy::load::parse_with_saphyr(&text).is_ok() {
                taken.set(taken.get() + usize::from(fast));
                total.set(total.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    // The generator reaches the fast path often enough for the check to mean something.
    let (taken, total) = (taken.get(), total.get());
    eprintln!("{taken} of {total} valid documents on the fast path");
    assert!(
        taken * 5 >= total,
        "{taken} of {total} valid documents on the fast path"
    );
}

#[test]
fn edited_documents_read_the_same_on_both_paths() {
    const EDITS: &[&str] = &[
        ":", ": ", "-", "- ", "#", " #", "\"", "'", "[", "]", "{", "}", ",", "\n", " ", "  ", "\t",
        "&", "*", "!", "|", ">", "?", "\\", "é", "---\n",
    ];
    let edit = (
        any::<prop::sample::Index>(),
        prop::sample::select(EDITS),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config::with_cases(cases(600)));
    runner
        .run(
            &(document(), layout(), vec(edit, 1..4)),
            |(doc, layout, edits)| {
                let mut text = render(&doc, layout);
                for (at, insert, delete) in edits {
                    let mut at = at.index(text.len() + 1);
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    if delete && at < text.len() {
                        text.remove(at);
                    } else {
                        text.insert_str(at, insert);
                    }
                }
                check_against_saphyr(&text)
                    .map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn the_bench_fleet_takes_the_fast_path_and_reads_as_serde_saphyr_reads_it() {
    // A smaller fleet than the benches' (the check parses it twice, in a debug build); the
    // same generator, so the same constructs.
    let fleet = fleet::Fleet::new(1_000, 5_000);
    assert_eq!(check_against_saphyr(&fleet.yaml), Ok(true));
}
