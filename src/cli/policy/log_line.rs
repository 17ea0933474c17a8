//! Decision-log lines as the input of `policy explain` (docs/operations.md): parse one line, or find
//! the line of one request id in a log that also holds other lines (human log lines, other
//! requests, a `kubectl logs --timestamps` prefix before the JSON).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

/// The fields of a decision-log line that `explain` reads; others (`time`, `duration_ms`) are
/// ignored. Absent fields are `None`, as the log omits them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct LogLine {
    pub request_id: Option<String>,
    pub direction: Option<String>,
    pub source_id: Option<String>,
    pub destination_id: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub decision: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub policy_version: Option<String>,
    pub status: Option<u16>,
    /// `tcp` on a TCP connection's line (L4 mode); absent (HTTP) otherwise.
    pub protocol: Option<String>,
    /// `FILE:LINE` of the line, when it was read from a log file.
    #[serde(skip)]
    pub at: Option<String>,
}

/// The request a decision line records: source ID, destination ID, method, path.
pub(super) struct Parties<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

impl LogLine {
    /// Parses one decision-log line.
    ///
    /// # Errors
    /// The text is not a JSON object of the decision log's shape.
    pub(super) fn parse(text: &str) -> anyhow::Result<Self> {
        serde_json::from_str(text.trim())
            .map_err(|e| anyhow!("not a decision-log line: expected one JSON object ({e})"))
    }

    /// Whether the line records a TCP connection rather than a request.
    pub(super) fn is_tcp(&self) -> bool {
        self.protocol.as_deref() == Some("tcp")
    }

    /// The request the line records.
    ///
    /// # Errors
    /// The line lacks a field a decision needs; a refusal before any decision (an unknown
    /// destination, a bad path) is named with its reason.
    pub(super) fn parties(&self) -> anyhow::Result<Parties<'_>> {
        if self.decision.is_none() {
            bail!("not a decision-log line: it has no `decision` field");
        }
        let before = "the request was refused before the policy was asked";
        Ok(Parties {
            source: self.field(&self.source_id, "source_id", before)?,
            destination: self.field(&self.destination_id, "destination_id", before)?,
            method: self.field(&self.method, "method", "it is incomplete")?,
            path: self.field(&self.path, "path", "it is incomplete")?,
        })
    }

    /// A field a decision needs, or an error saying why the line lacks it.
    fn field<'a>(
        &self,
        value: &'a Option<String>,
        name: &str,
        why: &str,
    ) -> anyhow::Result<&'a str> {
        let reason = self.reason.as_deref().unwrap_or("none given");
        value.as_deref().ok_or_else(|| {
            anyhow!(
                "the log line has no {name} (reason `{reason}`): {why}, so there is nothing \
                 to re-evaluate"
            )
        })
    }
}

/// Finds the first decision-log line with `request_id` in `log` (`-` reads stdin); also
/// returns how many lines carry that id.
///
/// # Errors
/// The log cannot be read, or no decision line carries that id.
pub(super) fn find(request_id: &str, log: &Path) -> anyhow::Result<(LogLine, usize)> {
    if request_id.is_empty() {
        bail!("--request-id must not be empty");
    }
    let (reader, name): (Box<dyn BufRead>, String) = if log == Path::new("-") {
        (Box::new(io::stdin().lock()), "stdin".into())
    } else {
        let file = File::open(log).with_context(|| format!("reading log {}", log.display()))?;
        (Box::new(BufReader::new(file)), log.display().to_string())
    };
    let found = scan(reader, request_id).with_context(|| format!("reading log {name}"))?;
    let (Some((number, text)), count) = found else {
        bail!("no decision-log line with request_id `{request_id}` in {name}");
    };
    let at = format!("{name}:{number}");
    let mut line = LogLine::parse(&text).with_context(|| at.clone())?;
    line.at = Some(at);
    Ok((line, count))
}

/// The first line (1-based number, JSON text) whose `request_id` is `id`, and the count.
fn scan(mut reader: impl BufRead, id: &str) -> io::Result<(Option<(usize, String)>, usize)> {
    let (mut first, mut count, mut number) = (None, 0, 0);
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes)? == 0 {
            return Ok((first, count));
        }
        number += 1;
        // Cheap filter first: most lines of a busy log are other requests.
        if !bytes.windows(id.len()).any(|w| w == id.as_bytes()) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Some(json) = json_with_id(&text, id) {
            count += 1;
            first.get_or_insert((number, json.to_owned()));
        }
    }
}

/// The JSON object in `text` (from its first `{`) when its `request_id` is `id`.
fn json_with_id<'t>(text: &'t str, id: &str) -> Option<&'t str> {
    let json = text[text.find('{')?..].trim_end();
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    (value.get("request_id")?.as_str()? == id).then_some(json)
}
