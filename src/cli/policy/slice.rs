//! `segward policy slice` (docs/fleet.md "Writing slices"): writes the slice of a policy for
//! one selector (`--for`), or one per namespace, segment or label value (`--per`) with a
//! kustomization making one ConfigMap of each, as ordinary policy folders. Each file keeps its
//! items' original text (slice/text.rs) under a header naming the scope, never the version:
//! an unchanged slice is byte-identical, so only the sidecars whose slice changed reload.
//! A slice whose YAML is over 1 MiB is written gzip-compressed (`*.yaml.gz`, which every
//! reader inflates) unless `--gzip never`; over 1 MiB even so, it is refused.
//! Exit 0 written, 1 invalid policy / a slice over 1 MiB / a write failure, 2 bad selector.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, ValueEnum};

use super::{Outcome, report_invalid};
use crate::atomic_file::AtomicWrite;
use crate::policy::load::{gunzip, gzip, is_policy_name};
use crate::policy::slice::ClassSegment;
use crate::policy::{self, CompiledPolicy, Fleet, PolicySource, Scope, Selector};
use crate::signing::{self, SigningKey};

mod groups;
mod text;

/// What a ConfigMap holds at most: a slice over it is refused.
pub const MAX_SLICE_BYTES: usize = 1024 * 1024;

/// The first words of every file `slice` writes: how a stale one is recognised.
const HEADER_MARK: &str = "# segward policy slice for ";

/// `policy slice` arguments: exactly one of --for / --per.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["scope", "per"])))]
pub struct SliceArgs {
    /// A policy file or folder.
    path: PathBuf,
    /// Whose slice: a SPIFFE ID, an ID pattern, a segment name or `k=v[,k=v]` labels (the
    /// union of the slices of the identities it covers).
    #[arg(long = "for", value_name = "SEL")]
    scope: Option<String>,
    /// One slice per group, each in DIR/<group>/, plus DIR/kustomization.yaml: `namespace`
    /// (of `ns/<name>` IDs; `other` for the rest), `segment`, or a label key (`unlabelled`
    /// for segments without it).
    #[arg(long, value_name = "namespace|segment|LABEL")]
    per: Option<String>,
    /// The folder to write (created if missing; slice files it no longer needs are removed).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Sign every slice folder as it is written (`policy.sig`, as `policy sign` writes it) with
    /// this Ed25519 private key, for sidecars that set `policy_verify`.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// When to write a slice's files gzip-compressed (`*.yaml.gz`): `auto` only when its YAML
    /// is over 1 MiB, `always`, or `never` (a slice over 1 MiB is then refused).
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Gzip::Auto)]
    gzip: Gzip,
}

/// `--gzip`: when a slice's files are written compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Gzip {
    // (No `///` here: clap would print each as its own paragraph of `--help`.)
    // Only a slice whose YAML would not fit a ConfigMap.
    Auto,
    // Every slice.
    Always,
    // No slice: one over 1 MiB is refused.
    Never,
}

/// The whole policy, read once: texts split into items for copying, parsed source for
/// planning.
struct Whole<'t> {
    texts: Vec<text::FileText<'t>>,
    /// The source files, canonical: never overwritten by a slice.
    paths: Vec<PathBuf>,
    source: PolicySource,
    compiled: CompiledPolicy,
    fleet: Fleet,
    now: i64,
}

/// One slice's files, ready to write: `(name, bytes)`, gzip-compressed when `gzip`.
struct Written {
    files: Vec<(String, Vec<u8>)>,
    rules: usize,
    /// The size of its YAML text, compressed or not.
    yaml_bytes: usize,
    gzip: bool,
}

impl Written {
    /// The slice's text files, compressed as `mode` says.
    fn encode(texts: Vec<(String, String)>, rules: usize, mode: Gzip) -> Self {
        let yaml_bytes = texts.iter().map(|(_, t)| t.len()).sum::<usize>();
        let compress = match mode {
            Gzip::Always => true,
            Gzip::Never => false,
            Gzip::Auto => yaml_bytes > MAX_SLICE_BYTES,
        };
        let files = texts
            .into_iter()
            .map(|(name, text)| match compress {
                true => (format!("{name}.gz"), gzip(&text)),
                false => (name, text.into_bytes()),
            })
            .collect();
        Self {
            files,
            rules,
            yaml_bytes,
            gzip: compress,
        }
    }

    /// What the slice's files hold on disk, and in its ConfigMap.
    fn bytes(&self) -> usize {
        self.files.iter().map(|(_, t)| t.len()).sum()
    }
}

/// Runs `policy slice`.
pub(super) fn run(args: SliceArgs) -> anyhow::Result<Outcome> {
    let key = match args.sign.as_deref().map(SigningKey::from_file).transpose() {
        Ok(key) => key,
        Err(problem) => {
            eprintln!("error: --sign: {problem}");
            return Ok(Outcome::Invalid);
        }
    };
    let texts = match PolicySource::read(&args.path) {
        Ok(t) => t,
        Err(errors) => return Ok(report_invalid(&errors, false)),
    };
    let whole = match load(&texts) {
        Ok(w) => w,
        Err(Broken::Policy(errors)) => return Ok(report_invalid(&errors, false)),
        Err(Broken::Layout(e)) => {
            eprintln!("error: {e}");
            return Ok(Outcome::Invalid);
        }
    };
    match (&args.scope, &args.per) {
        (Some(sel), _) => slice_for(&whole, sel, &args.out, key.as_ref(), args.gzip),
        (None, Some(per)) => slice_per(&whole, per, &args.out, key.as_ref(), args.gzip),
        (None, None) => Ok(Outcome::Usage),
    }
}

/// Why the whole policy cannot be sliced.
enum Broken {
    Policy(policy::PolicyErrors),
    Layout(text::CutError),
}

/// Parses, compiles and splits the policy files `texts` (name, text).
fn load(texts: &[(String, String)]) -> Result<Whole<'_>, Broken> {
    let source = PolicySource::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(Broken::Policy)?;
    let now = policy::unix_now();
    let compiled = policy::compile_at(&source, now).map_err(Broken::Policy)?;
    let fleet = Fleet::check(&source, now).map_err(Broken::Policy)?;
    let paths = texts
        .iter()
        .filter_map(|(n, _)| fs::canonicalize(n).ok())
        .collect();
    let texts = texts
        .iter()
        .zip(&source.files)
        .map(|((name, text), file)| text::FileText::new(name, text, &file.doc))
        .collect::<Result<_, _>>()
        .map_err(Broken::Layout)?;
    Ok(Whole {
        texts,
        paths,
        source,
        compiled,
        fleet,
        now,
    })
}

/// `--for SEL`: one slice, written to `out`.
fn slice_for(
    whole: &Whole,
    sel: &str,
    out: &Path,
    key: Option<&SigningKey>,
    mode: Gzip,
) -> anyhow::Result<Outcome> {
    let scope = match Selector::parse(&whole.compiled, sel) {
        Ok(Selector::Any) => {
            eprintln!("error: --for *: the slice of everything is the whole policy");
            return Ok(Outcome::Usage);
        }
        Ok(s) => groups::scope_of(&whole.compiled, &s),
        Err(e) => {
            eprintln!("error: --for {sel}: {e}");
            return Ok(Outcome::Usage);
        }
    };
    let written = match cut(whole, &scope, sel, mode) {
        Ok(w) => w,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(Outcome::Invalid);
        }
    };
    if refuse_source(whole, out, &written.files) {
        return Ok(Outcome::Usage);
    }
    write_folder(out, &written.files, key)?;
    let gzipped = match written.gzip {
        true => format!(" (gzip of {} bytes of YAML)", written.yaml_bytes),
        false => String::new(),
    };
    println!(
        "slice for {}: {} of {} rules, {} bytes{gzipped} in {} file(s), written to {}",
        sel.escape_debug(),
        written.rules,
        whole.fleet.rules(),
        written.bytes(),
        written.files.len(),
        out.display()
    );
    Ok(Outcome::Success)
}

/// `--per GROUPING`: one slice per group in `out/<group>/`, and the kustomization.
fn slice_per(
    whole: &Whole,
    per: &str,
    out: &Path,
    key: Option<&SigningKey>,
    mode: Gzip,
) -> anyhow::Result<Outcome> {
    let groups = match groups::groups(&whole.compiled, per) {
        Ok(g) => g,
        Err(message) => {
            eprintln!("error: --per {per}: {message}");
            return Ok(Outcome::Usage);
        }
    };
    let mut slices = Vec::with_capacity(groups.len());
    let mut failed = false;
    for (name, scope) in groups {
        let dir = groups::dir_name(&name);
        match cut(whole, &scope, &groups::describe(per, &name), mode) {
            Ok(w) if w.bytes() > MAX_SLICE_BYTES => {
                let gzipped = match w.gzip {
                    true => format!(" gzip-compressed ({} bytes of YAML)", w.yaml_bytes),
                    false => String::new(),
                };
                eprintln!(
                    "error: the slice for group {} is {} bytes{gzipped}, over the \
                     {MAX_SLICE_BYTES} bytes (1 MiB) a ConfigMap holds; slice finer \
                     (--per segment)",
                    name.escape_debug(),
                    w.bytes()
                );
                failed = true;
            }
            Ok(w) => slices.push((dir, w)),
            Err(message) => {
                eprintln!("error: group {}: {message}", name.escape_debug());
                failed = true;
            }
        }
    }
    if failed {
        return Ok(Outcome::Invalid);
    }
    if slices
        .iter()
        .any(|(d, w)| refuse_source(whole, &out.join(d), &w.files))
    {
        return Ok(Outcome::Usage);
    }
    fs::create_dir_all(out)?;
    for (dir, w) in &slices {
        write_folder(&out.join(dir), &w.files, key)?;
    }
    let kustomization = kustomization(per, &slices, key.is_some());
    AtomicWrite::new().write(&out.join("kustomization.yaml"), kustomization)?;
    print!("{}", summary(&slices, whole.fleet.rules(), out));
    Ok(Outcome::Success)
}

/// The slice for `scope` as file texts, checked: it re-parses to exactly the kept items and
/// compiles with its `tests:`.
fn cut(whole: &Whole, scope: &Scope, scope_text: &str, mode: Gzip) -> Result<Written, String> {
    let plan = whole.fleet.plan(&whole.source, scope);
    let header = format!(
        "{HEADER_MARK}{}\n# Written by `segward policy slice`: edit the source policy, not this file.\n",
        scope_text.escape_debug()
    );
    let empty = |kept: &policy::slice::FileSlice| {
        kept.segments.is_empty()
            && kept.rules.is_empty()
            && kept.revoked.is_empty()
            && kept.tests.is_empty()
    };
    // The synthesized segments go into the first file written (the first file when every
    // one is empty).
    let mut classes: String = plan.classes.iter().map(ClassSegment::yaml).collect();
    let first_written = plan.files.iter().position(|k| !empty(k)).unwrap_or(0);
    let mut files = Vec::new();
    let sources = whole.source.files.iter().zip(&whole.texts).zip(&plan.files);
    for (i, ((file, text), kept)) in sources.enumerate() {
        if empty(kept) && (i != first_written || classes.is_empty()) {
            continue;
        }
        let more = if i == first_written {
            std::mem::take(&mut classes)
        } else {
            String::new()
        };
        let body = text.cut(kept, &more);
        files.push((base_name(&file.name), format!("{header}{body}")));
    }
    if files.is_empty() {
        let first = whole.source.files.first().map(|f| base_name(&f.name));
        files.push((first.unwrap_or_else(|| "policy.yaml".to_owned()), header));
    }
    verify(whole, &plan, &files).map_err(|e| format!("the slice for {scope_text}: {e}"))?;
    Ok(Written::encode(files, plan.rules(), mode))
}

/// Re-parses `files` and checks they hold the plan's items and compile.
fn verify(
    whole: &Whole,
    plan: &policy::SlicePlan,
    files: &[(String, String)],
) -> Result<(), String> {
    let source = PolicySource::from_texts(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|e| e.to_string())?;
    let count = |f: fn(&policy::slice::FileSlice) -> usize| plan.files.iter().map(f).sum::<usize>();
    let got = |f: fn(&policy::source::PolicyDoc) -> usize| {
        source.files.iter().map(|s| f(&s.doc)).sum::<usize>()
    };
    let same = count(|k| k.segments.len()) + plan.classes.len() == got(|d| d.segments.0.len())
        && classes_read_back(&plan.classes, &source)
        && count(|k| k.rules.len()) == got(|d| d.rules.len())
        && count(|k| k.revoked.len()) == got(|d| d.revoked.len())
        && count(|k| k.tests.len()) == got(|d| d.tests.len());
    if !same {
        return Err(
            "the copied text does not hold the kept items (write the policy in block style)"
                .to_owned(),
        );
    }
    let compiled = policy::compile_at(&source, whole.now).map_err(|e| e.to_string())?;
    if compiled.rules().len() == plan.rules() {
        Ok(())
    } else {
        Err("the copied text does not compile to the kept rules".to_owned())
    }
}

/// Whether `source` holds each synthesized segment as planned: name, labels, identities.
fn classes_read_back(classes: &[ClassSegment], source: &PolicySource) -> bool {
    let segments: std::collections::HashMap<&str, &policy::source::SegmentDoc> = source
        .files
        .iter()
        .flat_map(|f| &f.doc.segments.0)
        .map(|(name, doc)| (name.value.as_str(), doc))
        .collect();
    classes.iter().all(|class| {
        segments.get(class.name.as_str()).is_some_and(|doc| {
            doc.labels == class.labels
                && doc.identities.len() == class.identities.len()
                && doc
                    .identities
                    .iter()
                    .zip(&class.identities)
                    .all(|(read, planned)| read.value == *planned)
        })
    })
}

/// The file name of a source file's path.
fn base_name(name: &str) -> String {
    Path::new(name)
        .file_name()
        .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Whether writing `files` into `dir` would replace a file of the policy being sliced
/// (reported).
fn refuse_source(whole: &Whole, dir: &Path, files: &[(String, Vec<u8>)]) -> bool {
    let Ok(dir) = fs::canonicalize(dir) else {
        return false; // a folder yet to be made holds no source file
    };
    let hit = files
        .iter()
        .map(|(n, _)| dir.join(n))
        .find(|p| whole.paths.contains(p));
    if let Some(path) = &hit {
        eprintln!(
            "error: --out {}: writing there would replace the policy file {} being sliced; \
             give another folder",
            dir.display(),
            path.display()
        );
    }
    hit.is_some()
}

/// Writes `files` into `dir` and removes the slice files written there before that are no
/// longer part of it (a file whose first line is not the slice header is never removed);
/// with `key`, then signs the folder's policy files as the sidecar will read them.
fn write_folder(
    dir: &Path,
    files: &[(String, Vec<u8>)],
    key: Option<&SigningKey>,
) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name else { continue };
        if !is_policy_name(&name) || files.iter().any(|(n, _)| *n == name) || !path.is_file() {
            continue;
        }
        if written_by_slice(&path, &name) {
            fs::remove_file(&path)?;
        }
    }
    for (name, text) in files {
        let path = dir.join(name);
        if fs::read(&path).is_ok_and(|old| old == *text) {
            continue; // unchanged: not even its mtime moves
        }
        AtomicWrite::new().write(&path, text)?;
    }
    if let Some(key) = key {
        // Signed over what is in the folder now, read as a sidecar reads it, not over what
        // this run meant to write.
        let texts = PolicySource::read(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let pairs = texts.iter().map(|(n, t)| (n.as_str(), t.as_bytes()));
        signing::sign(dir, pairs, key)?;
    }
    Ok(())
}

/// Whether the policy file at `path` opens with the slice header (inflated first when it is
/// gzip-compressed): a slice file an earlier run wrote.
fn written_by_slice(path: &Path, name: &str) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    if name.ends_with(".gz") {
        gunzip(&bytes).is_ok_and(|t| t.starts_with(HEADER_MARK))
    } else {
        bytes.starts_with(HEADER_MARK.as_bytes())
    }
}

/// `kustomization.yaml`: one ConfigMap `segward-policy-<group>` per slice folder, under a
/// fixed name (no kustomize name hash): a changed slice is swapped in place by the kubelet
/// and its sidecars reload live, like the base's `segward-policy` (docs/fleet.md).
fn kustomization(per: &str, slices: &[(String, Written)], signed: bool) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = format!(
        "# Written by `segward policy slice --per {}`: one ConfigMap per slice.\n\
         generatorOptions:\n  disableNameSuffixHash: true\nconfigMapGenerator:\n",
        per.escape_debug()
    );
    for (dir, w) in slices {
        let _ = writeln!(
            out,
            "  - name: {}\n    files:",
            quote(&format!("segward-policy-{dir}"))
        );
        for (name, _) in &w.files {
            let _ = writeln!(out, "      - {}", quote(&format!("{dir}/{name}")));
        }
        if signed {
            let signature = signing::FOLDER_SIGNATURE;
            let _ = writeln!(out, "      - {}", quote(&format!("{dir}/{signature}")));
        }
    }
    out
}

/// The summary table: group, rules, bytes.
fn summary(slices: &[(String, Written)], fleet_rules: usize, out: &Path) -> String {
    let width = slices
        .iter()
        .map(|(d, _)| d.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut text = format!(
        "{:<width$}  {:>7}  {:>9}  {:>9}\n",
        "GROUP", "RULES", "BYTES", "YAML"
    );
    for (dir, w) in slices {
        let gz = if w.gzip { "  gzip" } else { "" };
        let _ = writeln!(
            text,
            "{dir:<width$}  {:>7}  {:>9}  {:>9}{gz}",
            w.rules,
            w.bytes(),
            w.yaml_bytes
        );
    }
    let _ = writeln!(
        text,
        "{} slice(s) of a {fleet_rules}-rule policy written to {}, with kustomization.yaml",
        slices.len(),
        out.display()
    );
    text
}
