//! The page `segward policy report` writes (docs/blast-radius.md): one self-contained HTML file with
//! the segment graph grouped by the boundary label, an edge per allowed reach, a search box that
//! highlights an identity's or segment's blast radius and its callers, and the lint findings.
//! Inline CSS and JS from one asset (`report/report.html`); nothing is fetched. The data goes in
//! as JSON in a `<script type="application/json">` block, escaped so that hostile policy text
//! cannot close it. The data is [`crate::policy::analysis::report`]'s; this file only renders it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{Outcome, report_invalid};
use crate::atomic_file::AtomicWrite;
use crate::policy;
use crate::policy::analysis::lint::DEFAULT_BOUNDARY_LABEL;
use crate::policy::analysis::report::{ReportData, build};

/// The page: CSS, markup and JS; [`DATA_SLOT`] appears once, inside the data block.
const TEMPLATE: &str = include_str!("report/report.html");
/// Where [`render`] puts the escaped JSON.
const DATA_SLOT: &str = "__SEGWARD_REPORT_DATA__";

/// `policy report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A policy file or folder.
    path: PathBuf,
    /// Where to write the HTML file (overwritten).
    #[arg(long, value_name = "FILE.html")]
    out: PathBuf,
    /// The label whose values group the segments, and that the segmentation lints treat as
    /// the boundary.
    #[arg(long, value_name = "LABEL", default_value = DEFAULT_BOUNDARY_LABEL)]
    boundary_label: String,
}

/// Runs `policy report`: computes every edge and the lints, writes the page.
pub(super) fn run(args: ReportArgs) -> anyhow::Result<Outcome> {
    let compiled = match policy::load(&args.path) {
        Ok(p) => p,
        Err(errors) => return Ok(report_invalid(&errors, false)),
    };
    let data = build(
        &compiled,
        &args.path.display().to_string(),
        &args.boundary_label,
    )?;
    let html = render(&data);
    AtomicWrite::new()
        .write(&args.out, &html)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} bytes): {} nodes, {} edges, {} findings",
        args.out.display(),
        html.len(),
        data.nodes.len(),
        data.edges.len(),
        data.findings.len()
    );
    Ok(Outcome::Success)
}

/// Renders the report as one self-contained HTML document.
pub fn render(data: &ReportData) -> String {
    // Invariant: these types hold only strings, integers, lists and string-keyed maps, which
    // serde_json always serializes.
    let json = serde_json::to_string(data).expect("report data serializes to JSON");
    TEMPLATE.replacen(DATA_SLOT, &escape_for_script(&json), 1)
}

/// Makes JSON safe inside a `<script>` element: `<`, `>` and `&` (so no `</script` or `<!--`)
/// and U+2028/U+2029 become `\uXXXX` escapes. They occur only inside JSON strings, where the
/// escape means the same character, so the text still parses to the same value.
fn escape_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
