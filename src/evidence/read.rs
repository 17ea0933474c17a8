//! The readers: decision-log files and observation files into [`Observations`], streaming —
//! one bounded line buffer per input, memory otherwise by distinct keys.
//!
//! - An input is a file or `-` (stdin); gzip is recognised by its magic bytes, whatever the
//!   name (`.gz` from logrotate, concatenated members included).
//! - A line that cannot be read (not JSON, cut short, not UTF-8, longer than
//!   [`MAX_LINE`](super::line::MAX_LINE), not of the log's shape) is counted in [`Skipped`]
//!   with its file and line number; reading goes on. A file that cannot be opened is an
//!   error naming it. A gzip stream broken part-way is a skipped line at the place it broke.
//! - Observation files (`--observations`): JSON lines or CSV with a header, columns
//!   `source_id, destination_id, direction, protocol, method, path, decision, rule, reason,
//!   count, first_seen, last_seen, sampled` (docs/least-privilege.md#observations).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

use super::line::{self, MAX_LINE, Parsed, Skip};
use super::observe::{Direction, Key, Logged, Observations, Protocol, Stats};

/// How many skipped lines are kept with their place, for the report.
pub const EXAMPLES: usize = 10;

/// Lines not counted: how many for each reason, and the first few with file and line.
#[derive(Debug, Default, Clone)]
pub struct Skipped {
    /// Reason → lines.
    pub counts: BTreeMap<&'static str, u64>,
    /// The first [`EXAMPLES`] skipped lines: (file, line number, reason).
    pub examples: Vec<(String, u64, &'static str)>,
}

impl Skipped {
    /// Counts one skipped line.
    pub fn note(&mut self, file: &str, line: u64, why: &'static str) {
        *self.counts.entry(why).or_default() += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push((file.to_owned(), line, why));
        }
    }

    /// All skipped lines.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// What the readers went through.
#[derive(Debug, Default, Clone)]
pub struct Read {
    /// Inputs read.
    pub files: usize,
    /// Lines read (blank ones included).
    pub lines: u64,
    /// Lines not counted.
    pub skipped: Skipped,
}

/// An input that could not be opened or read at all.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {source}")]
pub struct ReadError {
    /// The input's name.
    pub file: String,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Opens `path` (`-` is stdin), unwrapping gzip when its first bytes say so.
///
/// # Errors
/// The file cannot be opened or its first bytes read.
pub fn open(path: &Path) -> Result<(Box<dyn BufRead>, String), ReadError> {
    let name = if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let failed = |source| ReadError {
        file: name.clone(),
        source,
    };
    let raw: Box<dyn io::Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(failed)?)
    };
    let mut reader = BufReader::with_capacity(256 * 1024, raw);
    let gzip = reader
        .fill_buf()
        .map_err(failed)?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        let inflated = flate2::bufread::MultiGzDecoder::new(reader);
        return Ok((
            Box::new(BufReader::with_capacity(256 * 1024, inflated)),
            name,
        ));
    }
    Ok((Box::new(reader), name))
}

/// Calls `each` with every line of `reader` (1-based number, its bytes without the newline,
/// or [`Skip::TooLong`]); a line longer than [`MAX_LINE`] is passed over without being held.
/// A read error part-way ends the input as a skipped line (`unreadable`).
fn lines(reader: &mut dyn BufRead, mut each: impl FnMut(u64, Result<&[u8], &'static str>)) {
    let mut held: Vec<u8> = Vec::new();
    let mut too_long = false;
    let mut number = 0u64;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                each(number + 1, Err("unreadable"));
                return;
            }
        };
        if chunk.is_empty() {
            if too_long {
                each(number + 1, Err(Skip::TooLong.as_str()));
            } else if !held.is_empty() {
                each(number + 1, Ok(&held));
            }
            return;
        }
        let used = match chunk.iter().position(|&b| b == b'\n') {
            Some(end) => {
                number += 1;
                if too_long || held.len() + end > MAX_LINE {
                    each(number, Err(Skip::TooLong.as_str()));
                } else if held.is_empty() {
                    each(number, Ok(&chunk[..end]));
                } else {
                    held.extend_from_slice(&chunk[..end]);
                    each(number, Ok(&held));
                }
                held.clear();
                too_long = false;
                end + 1
            }
            None => {
                if !too_long && held.len() + chunk.len() > MAX_LINE {
                    too_long = true;
                    held = Vec::new();
                } else if !too_long {
                    held.extend_from_slice(chunk);
                }
                chunk.len()
            }
        };
        reader.consume(used);
    }
}

/// Reads decision-log files into `into`.
///
/// # Errors
/// An input cannot be opened (the others already read are kept in `into`).
pub fn read_logs<P: AsRef<Path>>(
    paths: &[P],
    into: &mut Observations,
    read: &mut Read,
) -> Result<(), ReadError> {
    each_input(paths, read, |reader, name, read| {
        log_lines(reader, name, into, read);
    })
}

/// Opens each of `paths` in turn, counts it in `read.files` and hands it to `each` with its
/// name.
///
/// # Errors
/// An input cannot be opened (the ones before it have been handed over).
fn each_input<P: AsRef<Path>>(
    paths: &[P],
    read: &mut Read,
    mut each: impl FnMut(&mut dyn BufRead, &str, &mut Read),
) -> Result<(), ReadError> {
    for path in paths {
        let (mut reader, name) = open(path.as_ref())?;
        read.files += 1;
        each(&mut *reader, &name, read);
    }
    Ok(())
}

/// Counts the decision lines of one input.
pub fn log_lines(reader: &mut dyn BufRead, name: &str, into: &mut Observations, read: &mut Read) {
    lines(reader, |number, bytes| {
        read.lines += 1;
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(why) => return read.skipped.note(name, number, why),
        };
        let mut nul = false;
        match line::parse(bytes, |key, stats| nul = !into.add(key, stats)) {
            Parsed::Skipped(why) => read.skipped.note(name, number, why.as_str()),
            Parsed::Refused => into.refused += 1,
            Parsed::Observed if nul => read.skipped.note(name, number, "nul-in-field"),
            Parsed::Observed | Parsed::Continuation | Parsed::Blank => {}
        }
    });
}

/// One row of an observation file, as JSON or as CSV cells by header name.
#[derive(Deserialize, Default)]
struct Row<'a> {
    #[serde(borrow)]
    source_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    destination_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    direction: Option<Cow<'a, str>>,
    #[serde(borrow)]
    protocol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(borrow)]
    rule: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    count: Option<u64>,
    #[serde(borrow)]
    first_seen: Option<Cow<'a, str>>,
    #[serde(borrow)]
    last_seen: Option<Cow<'a, str>>,
    sampled: Option<bool>,
}

impl Row<'_> {
    /// Counts the row into `into`; the reason it cannot be counted otherwise.
    fn add(&self, into: &mut Observations) -> Result<(), &'static str> {
        let bad = "not-an-observation";
        let direction = text(&self.direction)
            .and_then(Direction::parse)
            .ok_or(bad)?;
        let protocol = Protocol::parse(text(&self.protocol)).ok_or(bad)?;
        let decision = text(&self.decision).and_then(Logged::parse).ok_or(bad)?;
        let (source, destination) = (text(&self.source_id), text(&self.destination_id));
        let (Some(source), Some(destination)) = (source, destination) else {
            into.refused = into.refused.saturating_add(self.count.unwrap_or(1));
            return Ok(());
        };
        let (method, path) = match protocol {
            Protocol::Tcp => ("", ""),
            Protocol::Http => (text(&self.method).ok_or(bad)?, text(&self.path).ok_or(bad)?),
        };
        let time = |v: &Option<Cow<'_, str>>| -> Result<Option<i64>, &'static str> {
            text(v)
                .map(|t| super::time::parse(t).ok_or("bad-time"))
                .transpose()
        };
        let stats = Stats {
            count: self.count.ok_or(bad)?,
            first: time(&self.first_seen)?,
            last: time(&self.last_seen)?,
            sampled: self.sampled == Some(true),
        };
        let key = Key {
            direction,
            protocol,
            source,
            destination,
            method,
            path,
            decision,
            rule: text(&self.rule),
            reason: text(&self.reason),
        };
        if into.add(&key, &stats) {
            Ok(())
        } else {
            Err("nul-in-field")
        }
    }
}

/// A cell's text, `None` when absent or empty.
fn text<'c>(v: &'c Option<Cow<'_, str>>) -> Option<&'c str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Reads observation files (JSON lines, or CSV with a header line) into `into`.
///
/// # Errors
/// An input cannot be opened.
pub fn read_observations<P: AsRef<Path>>(
    paths: &[P],
    into: &mut Observations,
    read: &mut Read,
) -> Result<(), ReadError> {
    each_input(paths, read, |reader, name, read| {
        let mut header: Option<Vec<String>> = None;
        let mut json = None;
        lines(reader, |number, bytes| {
            read.lines += 1;
            let text = match bytes.map(std::str::from_utf8) {
                Ok(Ok(text)) => text.trim_end_matches('\r'),
                Ok(Err(_)) => return read.skipped.note(name, number, "invalid-utf8"),
                Err(why) => return read.skipped.note(name, number, why),
            };
            if text.trim().is_empty() {
                return;
            }
            let is_json = *json.get_or_insert_with(|| text.trim_start().starts_with('{'));
            let outcome = if is_json {
                match serde_json::from_str::<Row<'_>>(text) {
                    Ok(row) => row.add(into),
                    Err(e) if e.is_eof() => Err("truncated"),
                    Err(_) => Err("not-an-observation"),
                }
            } else if let Some(columns) = &header {
                csv_row(columns, text).and_then(|row| row.add(into))
            } else {
                header = Some(
                    csv_cells(text)
                        .into_iter()
                        .map(|c| c.into_owned())
                        .collect(),
                );
                Ok(())
            };
            if let Err(why) = outcome {
                read.skipped.note(name, number, why);
            }
        });
    })
}

/// The cells of one CSV line (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn csv_cells(line: &str) -> Vec<Cow<'_, str>> {
    let mut cells = Vec::new();
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if quoted[i + 1..].starts_with('"') {
                        value.push('"');
                        chars.next();
                    } else {
                        end = i + 1;
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
            cells.push(Cow::Owned(value));
            rest = &quoted[end..];
            match rest.find(',') {
                Some(comma) => rest = &rest[comma + 1..],
                None => return cells,
            }
        } else {
            match rest.find(',') {
                Some(comma) => {
                    cells.push(Cow::Borrowed(&rest[..comma]));
                    rest = &rest[comma + 1..];
                }
                None => {
                    cells.push(Cow::Borrowed(rest));
                    return cells;
                }
            }
        }
    }
}

/// One CSV line as a [`Row`], by the header's column names.
fn csv_row<'a>(columns: &[String], line: &'a str) -> Result<Row<'a>, &'static str> {
    let cells = csv_cells(line);
    if cells.len() != columns.len() {
        return Err("not-an-observation");
    }
    let mut row = Row::default();
    for (name, cell) in columns.iter().zip(cells) {
        let cell = Some(cell);
        match name.trim() {
            "source_id" => row.source_id = cell,
            "destination_id" => row.destination_id = cell,
            "direction" => row.direction = cell,
            "protocol" => row.protocol = cell,
            "method" => row.method = cell,
            "path" => row.path = cell,
            "decision" => row.decision = cell,
            "rule" => row.rule = cell,
            "reason" => row.reason = cell,
            "first_seen" => row.first_seen = cell,
            "last_seen" => row.last_seen = cell,
            "count" => {
                let text = cell.as_deref().unwrap_or("");
                row.count = Some(text.parse().map_err(|_| "not-an-observation")?);
            }
            "sampled" => {
                row.sampled = Some(matches!(
                    cell.as_deref().map(str::to_ascii_lowercase).as_deref(),
                    Some("true" | "1" | "t")
                ));
            }
            _ => {}
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests;
