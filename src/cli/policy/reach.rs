//! `segward policy reach` (docs/blast-radius.md): the blast radius of a selector — every edge from
//! what `--from` selects to what `--to` selects — as a table, `--json` or Graphviz `--dot`.
//! Exit 0 whether or not anything is reachable, 1 invalid policy, 2 a bad selector.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::{Outcome, report_invalid};
use crate::policy::{self, Reach};

/// `policy reach` arguments: at least one of --from / --to.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("side").required(true).multiple(true).args(["from", "to"])))]
pub struct ReachArgs {
    /// A policy file or folder.
    path: PathBuf,
    /// Who sends: a SPIFFE ID, an ID pattern (`spiffe://example.org/ns/staging/**`: every
    /// identity a leaked staging credential could be), a segment name, `k=v[,k=v]` labels,
    /// or `*`.
    #[arg(long, value_name = "SEL")]
    from: Option<String>,
    /// Who is reached (same forms as --from); omitted: everything.
    #[arg(long, value_name = "SEL")]
    to: Option<String>,
    /// Print `{policy_version, query, edges, revoked_sources}` as JSON on stdout.
    #[arg(long, conflicts_with = "dot")]
    json: bool,
    /// Print a Graphviz digraph (`| dot -Tsvg`).
    #[arg(long)]
    dot: bool,
}

/// Runs `policy reach`.
pub(super) fn run(args: ReachArgs) -> anyhow::Result<Outcome> {
    let compiled = match policy::load(&args.path) {
        Ok(p) => p,
        Err(errors) => return Ok(report_invalid(&errors, args.json)),
    };
    let from = args.from.as_deref().unwrap_or("*");
    let to = args.to.as_deref().unwrap_or("*");
    let reach = match policy::reach_texts(&compiled, from, to) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(Outcome::Usage);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&reach)?);
    } else if args.dot {
        print!("{}", dot(&reach));
    } else {
        print!("{}", table(&reach));
    }
    Ok(Outcome::Success)
}

/// The text table: one row per edge, then the revoked sources.
pub(super) fn table(reach: &Reach) -> String {
    let mut rows = vec![
        [
            "SOURCE",
            "DESTINATION",
            "METHODS",
            "PATHS",
            "EXCEPT",
            "RULES",
        ]
        .map(str::to_owned),
    ];
    rows.extend(reach.edges.iter().map(edge_row));
    let mut out = format!(
        "reach from {} to {} (policy {}): {} edge(s)\n",
        reach.from,
        reach.to,
        reach.policy_version,
        reach.edges.len()
    );
    if reach.edges.is_empty() {
        out.push_str("nothing is reachable\n");
    } else {
        out.push_str(&aligned(&rows));
    }
    if !reach.revoked_sources.is_empty() {
        let names: Vec<&str> = reach
            .revoked_sources
            .iter()
            .map(|n| match n.as_str() {
                policy::analysis::UNSEGMENTED => "identities in no segment",
                n => n,
            })
            .collect();
        let _ = writeln!(
            out,
            "revoked identities reach nothing; the selector covers some in: {}",
            names.join(", ")
        );
    }
    out
}

/// One edge as the table's cells.
fn edge_row(e: &policy::Edge) -> [String; 6] {
    let join = |ps: &[std::sync::Arc<policy::pattern::PathPattern>]| {
        let texts: Vec<&str> = ps.iter().map(|p| p.as_str()).collect();
        if texts.is_empty() {
            "-".to_owned()
        } else {
            texts.join(" ")
        }
    };
    let mut rules = e.allow_rules.join(",");
    if !e.deny_rules.is_empty() {
        let _ = write!(rules, " minus {}", e.deny_rules.join(","));
    }
    if !e.dry_run_rules.is_empty() {
        let _ = write!(rules, " (dry_run: {})", e.dry_run_rules.join(","));
    }
    [
        e.source.name.clone(),
        e.destination.name.clone(),
        e.methods.to_string(),
        join(&e.paths),
        join(&e.except),
        rules,
    ]
}

/// The rows in columns as wide as their widest cell, two spaces apart; the last column is
/// not padded.
fn aligned(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A Graphviz digraph: one node per party, one labelled edge per pair of parties.
pub(super) fn dot(reach: &Reach) -> String {
    let quote = |s: &str| {
        let escaped: String = s
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                '\n' => vec!['\\', 'n'],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    };
    let mut out = String::from("digraph reach {\n  rankdir=LR;\n  node [shape=box];\n");
    let mut pairs: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for e in &reach.edges {
        let key = (e.source.name.as_str(), e.destination.name.as_str());
        match pairs.iter_mut().find(|(s, d, _)| (*s, *d) == key) {
            Some((_, _, labels)) => labels.push(e.requests()),
            None => pairs.push((key.0, key.1, vec![e.requests()])),
        }
    }
    for (s, d, labels) in pairs {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(s),
            quote(d),
            quote(&labels.join("\n"))
        );
    }
    out.push_str("}\n");
    out
}
