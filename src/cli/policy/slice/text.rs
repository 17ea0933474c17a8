//! The text of a slice file (docs/fleet.md "Writing slices"): each kept item's original
//! lines, copied from its source file, under the section key it was written under. Nothing
//! is re-emitted, so no name can be misquoted; a layout whose items cannot be told apart by
//! line (flow style: several items on one line) is refused, and the caller re-parses what
//! was cut and checks it holds exactly the kept items.

use crate::policy::slice::FileSlice;
use crate::policy::source::{PolicyDoc, Spanned};

/// Why a file's kept items cannot be copied line for line.
#[derive(Debug, thiserror::Error)]
pub enum CutError {
    /// Two items start on one line, or an item's line holds no `-` / key: flow style.
    #[error(
        "{file}:{line}: cannot copy its items line for line (flow style?); write its \
         `segments:`, `rules:`, `revoked:` and `tests:` in block style, one item per line"
    )]
    Layout {
        /// The source file.
        file: String,
        /// Its 1-based line.
        line: usize,
    },
}

/// The 0-based first lines of each list's items, in list order.
struct Starts {
    segments: Vec<usize>,
    rules: Vec<usize>,
    revoked: Vec<usize>,
    tests: Vec<usize>,
}

/// One source file's text, split into items once: every slice of it is cut from this.
pub struct FileText<'t> {
    lines: Vec<&'t str>,
    starts: Starts,
    bounds: Vec<usize>,
}

impl<'t> FileText<'t> {
    /// Splits `text` (parsed as `doc`, named `file`) into its items' line ranges.
    ///
    /// # Errors
    /// [`CutError::Layout`] when item boundaries are not whole lines.
    pub fn new(file: &str, text: &'t str, doc: &PolicyDoc) -> Result<Self, CutError> {
        let lines: Vec<&str> = text.lines().collect();
        let layout = |line: usize| CutError::Layout {
            file: file.to_owned(),
            line: line + 1,
        };
        let starts = Starts::of(&lines, doc).map_err(layout)?;
        let bounds = starts.bounds(&lines).map_err(layout)?;
        Ok(Self {
            lines,
            starts,
            bounds,
        })
    }

    /// The kept items as slice text, section by section, each item's lines as written
    /// (comments between items are left out); `more_segments` (entries of `segments:`,
    /// e.g. the slice's synthesized ones) follow the kept segments.
    pub fn cut(&self, kept: &FileSlice, more_segments: &str) -> String {
        let mut out = String::new();
        let sections = [
            (
                "segments",
                &self.starts.segments,
                &kept.segments,
                more_segments,
            ),
            ("rules", &self.starts.rules, &kept.rules, ""),
            ("revoked", &self.starts.revoked, &kept.revoked, ""),
            ("tests", &self.starts.tests, &kept.tests, ""),
        ];
        for (key, starts, kept, more) in sections {
            if kept.is_empty() && more.is_empty() {
                continue;
            }
            out.push_str(key);
            out.push_str(":\n");
            for start in kept.iter().filter_map(|&i| starts.get(i)) {
                for line in item_lines(&self.lines, &self.bounds, *start) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out.push_str(more);
        }
        out
    }
}

impl Starts {
    /// Where each item of `doc` starts (a sequence item: at its `-`), or the 0-based line
    /// whose layout is not one of block style.
    fn of(lines: &[&str], doc: &PolicyDoc) -> Result<Self, usize> {
        let item = |l: usize| seq_item_line(lines, l).ok_or(l);
        Ok(Self {
            segments: doc.segments.0.iter().map(|(k, _)| line_of(k)).collect(),
            rules: doc
                .rules
                .iter()
                .map(|r| item(line_of(r)))
                .collect::<Result<_, _>>()?,
            revoked: doc
                .revoked
                .iter()
                .map(|r| item(line_of(r)))
                .collect::<Result<_, _>>()?,
            tests: doc
                .tests
                .iter()
                .map(|t| item(line_of(t)))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The lines that end an item: every item's first line and every top-level line,
    /// ascending; or the 0-based line two items start on.
    fn bounds(&self, lines: &[&str]) -> Result<Vec<usize>, usize> {
        let mut bounds: Vec<usize> = [&self.segments, &self.rules, &self.revoked, &self.tests]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        bounds.sort_unstable();
        if let Some(w) = bounds.windows(2).find(|w| w[0] == w[1]) {
            return Err(w[0]);
        }
        bounds.extend((0..lines.len()).filter(|&l| top_level(lines[l])));
        bounds.sort_unstable();
        bounds.dedup();
        Ok(bounds)
    }
}

/// The 0-based line a parsed item starts on.
fn line_of<T>(item: &Spanned<T>) -> usize {
    usize::try_from(item.referenced.line()).map_or(0, |l| l.saturating_sub(1))
}

/// The line of the `-` that opens the sequence item located at `line`: that line, or the
/// line before it when the `-` stands alone there.
fn seq_item_line(lines: &[&str], line: usize) -> Option<usize> {
    let text = lines.get(line)?.trim_start();
    if text.starts_with("- ") || text == "-" {
        return Some(line);
    }
    let before = line.checked_sub(1)?;
    (lines.get(before)?.trim() == "-").then_some(before)
}

/// Whether `line` starts something at the top level (a key, a document marker): it ends
/// the item above it.
fn top_level(line: &str) -> bool {
    if line.starts_with("---") || line.starts_with("...") {
        return true;
    }
    line.chars()
        .next()
        .is_some_and(|c| !c.is_whitespace() && c != '#' && c != '-')
}

/// The lines of the item starting at `start`: up to the next boundary, less trailing blank
/// and comment lines.
fn item_lines<'a, 't>(lines: &'a [&'t str], bounds: &[usize], start: usize) -> &'a [&'t str] {
    // `bounds` is ascending: the first one after `start`, by halving (a fleet has 60k).
    let end = bounds
        .get(bounds.partition_point(|&b| b <= start))
        .copied()
        .unwrap_or(lines.len());
    let mut end = end.max(start + 1);
    while end > start + 1 {
        let last = lines[end - 1].trim();
        if last.is_empty() || last.starts_with('#') {
            end -= 1;
        } else {
            break;
        }
    }
    &lines[start..end]
}

#[cfg(test)]
mod tests;
