//! Reads a policy file or a folder of them into a [`PolicySource`]: the only file-system
//! access of the policy module (docs/policy-language.md: "Files in a directory are merged").
//!
//! A folder contributes its `*.yaml` and `*.yml` files, not recursively, in name order;
//! names starting with `.` are skipped, so Kubernetes' `..data` and `..2026_…` entries of a
//! mounted ConfigMap are never read twice (the visible names are symlinks into them).
//! `*.yaml.gz` and `*.yml.gz` are read gzip-decompressed (docs/fleet.md "Slices over
//! 1 MiB"): their text is what every reader sees, under the file's own name.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{PolicyError, PolicyErrorKind, PolicyErrors};
use super::source::PolicyDoc;

/// A policy file larger than this is refused (a 50k-rule policy is about 5 MB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The parsed files of one policy, in the order they were read.
#[derive(Debug, Default)]
pub struct PolicySource {
    /// Each file with its parsed content.
    pub files: Vec<SourceFile>,
}

/// One parsed policy file.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the operator gave it, for messages.
    pub name: String,
    /// The parsed YAML.
    pub doc: PolicyDoc,
}

impl PolicySource {
    /// Reads `path`: one file, or every policy file directly inside a folder.
    ///
    /// # Errors
    /// Every file that cannot be read or parsed, each at file:line:col.
    pub fn load(path: &Path) -> Result<Self, PolicyErrors> {
        let texts = Self::read(path)?;
        Self::from_texts(
            texts
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str())),
        )
    }

    /// The `(file name, text)` of every policy file `path` stands for, in name order, read
    /// but not parsed (a reload hashes them first and parses only what changed).
    ///
    /// # Errors
    /// Every file that cannot be read, or is over the size limit.
    pub fn read(path: &Path) -> Result<Vec<(String, String)>, PolicyErrors> {
        let files = policy_files(path)?;
        let mut texts = Vec::with_capacity(files.len());
        let mut errors = Vec::new();
        for file in files {
            match read_capped(&file) {
                Ok(text) => texts.push((file.display().to_string(), text)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(texts)
        } else {
            Err(PolicyErrors(errors))
        }
    }

    /// Parses in-memory policy texts, each `(name, text)` standing for one file.
    ///
    /// # Errors
    /// Every text that does not parse, each at name:line:col.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PolicyErrors> {
        let mut source = Self::default();
        let mut errors = Vec::new();
        for (name, text) in texts {
            match parse_doc(name, text) {
                Ok(doc) => source.files.push(SourceFile {
                    name: name.to_owned(),
                    doc,
                }),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(source)
        } else {
            Err(PolicyErrors(errors))
        }
    }
}

/// Parses one file's text: on the fast path when it is in its subset ([`super::fast_yaml`]),
/// otherwise — and for every error — with serde-saphyr, with budgets sized for large fleets
/// but bounded for hostile input.
///
/// # Errors
/// The YAML error (syntax, unknown key, type, budget) at name:line:col.
pub fn parse_doc(name: &str, text: &str) -> Result<PolicyDoc, PolicyError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        let kind = PolicyErrorKind::TooLarge(text.len() as u64, MAX_FILE_BYTES);
        return Err(PolicyError::at(name, 0, 0, kind));
    }
    if let Some(doc) = super::fast_yaml::parse::<Option<PolicyDoc>>(text) {
        return Ok(doc.unwrap_or_default());
    }
    parse_with_saphyr(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| yaml_error(name, &e))
}

/// Parses one file's text with serde-saphyr alone (the reference the fast path is checked
/// against).
///
/// # Errors
/// serde-saphyr's error.
pub fn parse_with_saphyr(text: &str) -> Result<Option<PolicyDoc>, serde_saphyr::Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 8_000_000;
    budget.max_events = 16_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Option<PolicyDoc>>(text, options)
}

fn yaml_error(name: &str, e: &serde_saphyr::Error) -> PolicyError {
    let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let message = e.without_snippet().to_string();
    // The parser appends its own "at line X, column Y"; the prefix already says it.
    let message = match message.rfind(" at line ") {
        Some(i) if line > 0 => message[..i].to_owned(),
        _ => message,
    };
    PolicyError::at(name, line, col, PolicyErrorKind::Yaml(message))
}

/// The files `path` stands for, sorted by name.
fn policy_files(path: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let io_err = |e: std::io::Error| {
        PolicyError::at(
            &path.display().to_string(),
            0,
            0,
            PolicyErrorKind::Io(e.to_string()),
        )
    };
    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(io_err)? {
        let file = entry.map_err(io_err)?.path();
        if is_policy_file(&file) {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        let at = path.display().to_string();
        return Err(PolicyError::at(&at, 0, 0, PolicyErrorKind::NoPolicyFiles));
    }
    Ok(files)
}

fn is_policy_file(file: &Path) -> bool {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // `is_file` follows symlinks, which is what a ConfigMap mount needs.
    is_policy_name(name) && !name.starts_with('.') && file.is_file()
}

/// Whether a folder entry named `name` is a policy file: `*.yaml`, `*.yml`, or either
/// gzip-compressed (`*.yaml.gz`, `*.yml.gz`).
pub fn is_policy_name(name: &str) -> bool {
    let plain = name.strip_suffix(".gz").unwrap_or(name);
    plain.ends_with(".yaml") || plain.ends_with(".yml")
}

fn read_capped(file: &Path) -> Result<String, PolicyError> {
    let name = file.display().to_string();
    let io_err =
        |e: std::io::Error| PolicyError::at(&name, 0, 0, PolicyErrorKind::Io(e.to_string()));
    let len = fs::metadata(file).map_err(io_err)?.len();
    if len > MAX_FILE_BYTES {
        return Err(PolicyError::at(
            &name,
            0,
            0,
            PolicyErrorKind::TooLarge(len, MAX_FILE_BYTES),
        ));
    }
    if !name.ends_with(".gz") {
        return fs::read_to_string(file).map_err(io_err);
    }
    let bytes = fs::read(file).map_err(io_err)?;
    gunzip(&bytes).map_err(|kind| PolicyError::at(&name, 0, 0, kind))
}

/// The text of a gzip-compressed policy file: at most [`MAX_FILE_BYTES`] once inflated (a
/// small file may inflate a thousandfold), UTF-8, every member of the stream read.
///
/// # Errors
/// [`PolicyErrorKind::Gzip`] for a stream that is not gzip or is cut short,
/// [`PolicyErrorKind::TooLarge`] past the limit, [`PolicyErrorKind::Io`] for non-UTF-8 text.
pub fn gunzip(bytes: &[u8]) -> Result<String, PolicyErrorKind> {
    use std::io::Read as _;
    let mut text = Vec::new();
    let limit = MAX_FILE_BYTES + 1;
    flate2::bufread::MultiGzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut text)
        .map_err(|e| PolicyErrorKind::Gzip(e.to_string()))?;
    if text.len() as u64 >= limit {
        return Err(PolicyErrorKind::TooLarge(limit, MAX_FILE_BYTES));
    }
    String::from_utf8(text)
        .map_err(|e| PolicyErrorKind::Io(format!("not UTF-8 text once inflated: {e}")))
}

/// `text` gzip-compressed the way `policy slice` writes it: best compression, no file name,
/// no time stamp, so the same text always gives the same bytes (with the same segward).
pub fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Invariant: writing into a Vec cannot fail.
    encoder.write_all(text.as_bytes()).expect("write to a Vec");
    encoder.finish().expect("write to a Vec")
}

#[cfg(test)]
mod tests;
