//! `segward policy sign POLICY --key KEY` and the signature half of `policy check
//! --verify-key` (docs/fleet.md#signed-policy): the policy files are read once, and what is
//! signed or verified is exactly what is compiled.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::{Outcome, report_invalid};
use crate::policy::{CompiledPolicy, PolicyErrors, PolicySource, compile};
use crate::signing::{self, Fingerprint, PolicyKeys, SigningKey, VerifyKey};

/// `policy sign` arguments.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// A policy folder (the signature goes into it as policy.sig) or a single policy file
    /// (the signature goes beside it as FILE.sig).
    path: PathBuf,
    /// The Ed25519 private key (PKCS#8 PEM, from `segward certs signing-key` or
    /// `openssl genpkey -algorithm ed25519`).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
}

/// The policy files as read, `(name, text)` in name order.
pub(super) type Texts = Vec<(String, String)>;

/// Runs `policy sign`: compiles the policy (its `tests:` included) and signs exactly the
/// bytes compiled; an invalid policy is not signed.
pub(super) fn run(args: SignArgs) -> anyhow::Result<Outcome> {
    let key = match SigningKey::from_file(&args.key) {
        Ok(key) => key,
        Err(problem) => {
            eprintln!("error: --key {}: {problem}", args.key.display());
            return Ok(Outcome::Invalid);
        }
    };
    let texts = match read_and_compile(&args.path) {
        Ok((texts, _)) => texts,
        Err(errors) => {
            report_invalid(&errors, false);
            eprintln!("nothing signed");
            return Ok(Outcome::Invalid);
        }
    };
    let (file, signature) = signing::sign(&args.path, pairs(&texts), &key)?;
    println!(
        "signed {} policy file(s) of {} with key {}: wrote {}",
        texts.len(),
        args.path.display(),
        signature.key,
        file.display()
    );
    println!("digest {}", signature.digest);
    Ok(Outcome::Success)
}

/// Reads the policy at `path` once and compiles those texts.
///
/// # Errors
/// Every file that cannot be read, parsed or validated, or whose `tests:` fail.
pub(super) fn read_and_compile(path: &Path) -> Result<(Texts, CompiledPolicy), PolicyErrors> {
    let texts = PolicySource::read(path)?;
    let compiled = compile_texts(&texts)?;
    Ok((texts, compiled))
}

/// Compiles policy texts as read.
///
/// # Errors
/// Every text that cannot be parsed or validated, or whose `tests:` fail.
pub(super) fn compile_texts(texts: &Texts) -> Result<CompiledPolicy, PolicyErrors> {
    let named = texts.iter().map(|(n, t)| (n.as_str(), t.as_str()));
    compile(&PolicySource::from_texts(named)?)
}

/// `policy check --verify-key`: `Ok(None)` without keys; else the key that signed `texts`,
/// or `Err` with the outcome already reported (a key file that is no key, or a signature
/// that is missing, invalid or by none of the keys).
pub(super) fn verify(
    path: &Path,
    texts: &Texts,
    key_files: &[PathBuf],
    json: bool,
) -> Result<Option<Fingerprint>, Outcome> {
    if key_files.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::with_capacity(key_files.len());
    for file in key_files {
        match VerifyKey::from_file(file) {
            Ok(key) => keys.push(key),
            Err(problem) => {
                eprintln!("error: --verify-key {}: {problem}", file.display());
                return Err(Outcome::Invalid);
            }
        }
    }
    PolicyKeys::new(keys)
        .verify(path, pairs(texts))
        .map(Some)
        .map_err(|error| {
            if json {
                let file = signing::signature_path(path).display().to_string();
                let error =
                    json!({"file": file, "line": 0, "col": 0, "message": error.to_string()});
                println!(
                    "{}",
                    json!({"valid": false, "errors": [error], "warnings": []})
                );
            } else {
                eprintln!("error: {error}");
                eprintln!("invalid: policy signature");
            }
            Outcome::Invalid
        })
}

fn pairs(texts: &Texts) -> impl Iterator<Item = (&str, &[u8])> {
    texts
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_bytes()))
}
