//! `segward certs init | issue | inspect` (docs/cli.md): a throwaway PKI for the demo,
//! tests and trials. Production SVIDs come from your SPIFFE issuer (SPIRE, cert-manager…).

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Subcommand;

use super::Outcome;
use crate::certs;
use crate::identity::{SpiffeId, TrustDomain};
use crate::signing;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA: writes ca.pem, ca.key (mode 0600) and bundle.pem into --out.
    #[command(after_help = "Docs: docs/cli.md#segward-certs-init")]
    Init {
        /// Trust domain the CA vouches for, e.g. example.org (lower case only).
        #[arg(long, value_name = "NAME")]
        trust_domain: String,
        /// Folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Overwrite an existing ca.key.
        #[arg(long)]
        force: bool,
    },
    /// Issue an X509-SVID: writes svid.pem (leaf then chain), svid.key (0600) and bundle.pem.
    #[command(after_help = "Docs: docs/cli.md#segward-certs-issue")]
    Issue {
        /// Folder holding ca.pem and ca.key (from `certs init`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The workload's SPIFFE ID in the CA's trust domain, e.g.
        /// spiffe://example.org/ns/prod/sa/payments.
        #[arg(long, value_name = "ID")]
        spiffe_id: String,
        /// Folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity: a number and a unit, s, m, h or d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// DNS name to add as a SAN (repeatable; `*.` wildcard allowed), for clients that
        /// check host names.
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
    },
    /// Show a certificate's SPIFFE ID, validity and whether it passes the X509-SVID rules;
    /// exits 1 if it passes them in neither role (client nor server), or if a certificate
    /// after it is not a signing certificate (CA:true and keyCertSign, X509-SVID §4.1/§4.3).
    #[command(
        after_help = "Docs: docs/cli.md#segward-certs-inspect; the X509-SVID rules: docs/security.md"
    )]
    Inspect {
        /// A PEM file; the first certificate is inspected as the leaf, every later one
        /// checked as a signing certificate of its chain.
        file: PathBuf,
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Make an Ed25519 key pair for signing policy: writes signing.key (PKCS#8 PEM, mode 0600)
    /// and signing.pub (SPKI PEM) into --out, and prints the public key's fingerprint.
    ///
    /// The private key signs in CI (`segward policy sign`); sidecars get only signing.pub
    /// (`policy_verify.keys`). Both are openssl-compatible. Exit code 0 when written, 1 when
    /// signing.key exists (without --force) or a file cannot be written.
    #[command(
        name = "signing-key",
        after_help = "Docs: docs/fleet.md#signed-policy; docs/cli.md#segward-certs-signing-key"
    )]
    SigningKey {
        /// Folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Overwrite an existing signing.key.
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `certs` subcommand.
pub fn run(cmd: CertsCommand) -> anyhow::Result<Outcome> {
    match cmd {
        CertsCommand::Init {
            trust_domain,
            out,
            force,
        } => {
            let td = TrustDomain::parse(&trust_domain)
                .map_err(|e| anyhow::anyhow!("--trust-domain `{trust_domain}`: {e}"))?;
            let files = certs::init(&td, &out, force)?;
            println!(
                "wrote {}, {} (0600), {}",
                files.cert.display(),
                files.key.display(),
                files.bundle.display()
            );
        }
        CertsCommand::Issue {
            ca,
            spiffe_id,
            out,
            ttl,
            dns,
        } => {
            let id = SpiffeId::parse(&spiffe_id)
                .map_err(|e| anyhow::anyhow!("--spiffe-id `{spiffe_id}`: {e}"))?;
            let ttl = certs::parse_ttl(&ttl)?;
            let files = certs::issue(&ca, &id, &out, ttl, &dns)?;
            println!(
                "wrote {}, {} (0600), {} for {id}",
                files.cert.display(),
                files.key.display(),
                files.bundle.display()
            );
        }
        CertsCommand::SigningKey { out, force } => {
            let files = signing::write_key_pair(&out, force)?;
            println!(
                "wrote {} (0600), {}; key {}",
                files.private.display(),
                files.public.display(),
                files.fingerprint
            );
        }
        CertsCommand::Inspect { file, json } => {
            let inspection = certs::inspect(&file, SystemTime::now())?;
            if json {
                println!("{}", serde_json::to_string(&inspection)?);
            } else {
                print!("{inspection}");
            }
            // docs/cli.md: "1 invalid input (… certificate)"; the report is printed either
            // way.
            if !inspection.is_svid() {
                let why = &inspection.client_check;
                eprintln!("error: {}: not a valid X509-SVID: {why}", file.display());
                return Ok(Outcome::Invalid);
            }
            if !inspection.is_valid() {
                let why = &inspection.chain_check;
                eprintln!("error: {}: the chain is not valid: {why}", file.display());
                return Ok(Outcome::Invalid);
            }
        }
    }
    Ok(Outcome::Success)
}
