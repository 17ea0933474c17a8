//! The one printer of a reach diff: each changed pair as one line, in the layout of the front
//! that shows it (`policy diff`, `policy contain`/`release`, the demo). Pure: it returns text
//! and the front prints it.

use super::{Change, Diff, PairChange};
use crate::policy::analysis::reach::Edge;

/// How a changed pair is written; each layout is what one front has always printed, so its
/// output (and what the tests assert of it) stays byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout<'w> {
    /// `policy diff`, for review: `+ added    a -> b: GET /x  [allowed by r]`,
    /// `- removed  a -> b: was GET /x`, `~ widened  a -> b: * /x  (was GET /x)  [allowed by r]`.
    Review,
    /// `policy contain` / `release`: `removed:  a -> b: * /**`, with `word` (`removed`,
    /// `restored`) for a pair added or removed whole and the change's name for the others:
    /// `narrowed: a -> b: GET /x (was * /**)`.
    Ledger {
        /// What a whole-pair change did, as the operator reads it.
        word: &'w str,
    },
    /// The demo's story: `- a → b: GET /x` for a removed pair, otherwise
    /// `~ a → b: GET /x narrowed, now nothing` (before, change, after).
    Story,
}

impl Layout<'_> {
    /// The arrow between the parties: `->` in the CLI's layouts, `→` in the demo's.
    fn arrow(self) -> &'static str {
        match self {
            Self::Review | Self::Ledger { .. } => "->",
            Self::Story => "→",
        }
    }
}

/// One changed pair as one line (no newline).
pub fn change_line(change: &PairChange, layout: Layout<'_>) -> String {
    let pair = format!(
        "{} {} {}",
        change.source,
        layout.arrow(),
        change.destination
    );
    let (old, new) = (
        Edge::all_requests(&change.old),
        Edge::all_requests(&change.new),
    );
    match (layout, change.change) {
        (Layout::Review, Change::Added) => {
            format!("+ added    {pair}: {new}  [{}]", allowed_by(&change.new))
        }
        (Layout::Review, Change::Removed) => format!("- removed  {pair}: was {old}"),
        (Layout::Review, other) => format!(
            "~ {:<8} {pair}: {new}  (was {old})  [{}]",
            other.as_str(),
            allowed_by(&change.new)
        ),
        (Layout::Ledger { word }, Change::Removed) => format!("{}{pair}: {old}", label(word)),
        (Layout::Ledger { word }, Change::Added) => format!("{}{pair}: {new}", label(word)),
        (Layout::Ledger { .. }, other) => {
            format!("{}{pair}: {new} (was {old})", label(other.as_str()))
        }
        (Layout::Story, Change::Removed) => format!("- {pair}: {old}"),
        (Layout::Story, other) => format!("~ {pair}: {old} {}, now {new}", other.as_str()),
    }
}

/// Every changed pair, a line each (each ending in a newline). A diff with no change reads
/// `no reach changed` in the review layout, `removed:  nothing (the scope reached nothing)`
/// (with its `word`) in the ledger layout, and is empty in the story layout.
pub fn changes_text(diff: &Diff, layout: Layout<'_>) -> String {
    let mut out = String::new();
    for change in &diff.changes {
        out.push_str(&change_line(change, layout));
        out.push('\n');
    }
    if diff.changes.is_empty() {
        match layout {
            Layout::Review => out.push_str("no reach changed\n"),
            Layout::Ledger { word } => {
                out.push_str(&format!(
                    "{}nothing (the scope reached nothing)\n",
                    label(word)
                ));
            }
            Layout::Story => {}
        }
    }
    out
}

/// `removed:  `: the word and a colon, padded to 10 columns.
fn label(word: &str) -> String {
    format!("{:<10}", format!("{word}:"))
}

/// `allowed by a,b`: the allow rules behind the edges, sorted, once each.
fn allowed_by(edges: &[Edge]) -> String {
    let mut names: Vec<&str> = edges
        .iter()
        .flat_map(|e| e.allow_rules.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    format!("allowed by {}", names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{from_text, reach_texts};

    const SEGMENTS: &str = r#"
segments:
  a: { identities: ["spiffe://t.org/a"] }
  b: { identities: ["spiffe://t.org/b"] }
  c: { identities: ["spiffe://t.org/c"] }
rules:
"#;

    /// The diff from `old` rules to `new` rules.
    fn diff_of(old: &str, new: &str) -> Diff {
        let reach = |rules: &str| {
            let policy = from_text("p.yaml", &format!("{SEGMENTS}{rules}")).unwrap();
            reach_texts(&policy, "*", "*").unwrap()
        };
        super::super::diff(&reach(old), &reach(new))
    }

    fn widened_removed_added() -> Diff {
        diff_of(
            "  - { name: r1, from: [a], to: [b], methods: [GET], paths: [\"/v1/**\"] }\n  \
             - { name: r2, from: [a], to: [c] }\n",
            "  - { name: r1, from: [a], to: [b], methods: [GET, POST], paths: [\"/v1/**\"] }\n  \
             - { name: r3, from: [c], to: [b], methods: [GET], paths: [\"/x\"] }\n",
        )
    }

    #[test]
    fn each_layout_writes_what_its_front_always_printed() {
        let d = widened_removed_added();
        assert_eq!(
            changes_text(&d, Layout::Review),
            "~ widened  a -> b: GET,POST /v1/**  (was GET /v1/**)  [allowed by r1]\n\
             - removed  a -> c: was * /**\n\
             + added    c -> b: GET /x  [allowed by r3]\n"
        );
        assert_eq!(
            changes_text(&d, Layout::Ledger { word: "removed" }),
            "widened:  a -> b: GET,POST /v1/** (was GET /v1/**)\n\
             removed:  a -> c: * /**\n\
             removed:  c -> b: GET /x\n"
        );
        assert_eq!(
            changes_text(&d, Layout::Story),
            "~ a → b: GET /v1/** widened, now GET,POST /v1/**\n\
             - a → c: * /**\n\
             ~ c → b: nothing added, now GET /x\n"
        );
    }

    #[test]
    fn a_diff_without_changes_says_so_in_the_cli_layouts() {
        let rules = "  - { name: r1, from: [a], to: [b] }\n";
        let d = diff_of(rules, rules);
        assert_eq!(changes_text(&d, Layout::Review), "no reach changed\n");
        assert_eq!(
            changes_text(&d, Layout::Ledger { word: "restored" }),
            "restored: nothing (the scope reached nothing)\n"
        );
        assert_eq!(changes_text(&d, Layout::Story), "");
    }
}
