//! The command line (docs/cli.md): clap definitions, dispatch, and the one place errors
//! become exit codes — 0 success, 1 invalid input (policy, certificate, …), 2 usage error.
//! Results go to stdout (`--json` is machine-readable); errors and warnings to stderr.

mod certs;
mod policy;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// segward: SPIFFE identity-segment authorization sidecar.
#[derive(Debug, Parser)]
#[command(
    name = "segward",
    version,
    about,
    long_about = None,
    after_help = "Docs: README.md, then docs/ (cli.md for every command and exit code; runbook.md for an incident)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: mTLS inbound and/or outbound listeners enforcing the policy per request.
    #[command(
        after_help = "Docs: every config key and its default: docs/configuration.md; endpoints, metrics, decision log: docs/operations.md"
    )]
    Run(run::RunArgs),
    /// Validate, lint and explain segment policies.
    #[command(
        subcommand,
        after_help = "Docs: docs/policy-language.md; docs/cli.md#segward-policy"
    )]
    Policy(policy::PolicyCommand),
    /// Make a throwaway CA and X509-SVIDs, inspect certificates, and make policy signing keys.
    #[command(
        subcommand,
        after_help = "Docs: docs/cli.md#segward-certs; identities from SPIRE: docs/spire.md"
    )]
    Certs(certs::CertsCommand),
    /// Play the demo: real sidecars on loopback, the example policy, freshly minted identities.
    #[command(after_help = "Docs: docs/demo.md")]
    Demo {
        /// Leave the fleet running after the scenarios, with commands to try (ctrl-c to stop).
        #[arg(long)]
        keep: bool,
    },
}

/// How a command ended, short of a usage error (which clap reports with exit code 2).
pub enum Outcome {
    /// Exit code 0.
    Success,
    /// Exit code 1: the input (policy, certificate, ID) is invalid; already reported.
    Invalid,
    /// Exit code 2: a usage error found after parsing (e.g. a selector naming no segment);
    /// already reported.
    Usage,
    /// Exit code 3: `policy diff --fail-on-widen` found reach that grew.
    Widened,
    /// Exit code 3: `policy replay --fail-on-break` found observed traffic the policy denies.
    Broke,
}

/// Parses the command line, runs the command, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Certs(cmd) => certs::run(cmd),
        Command::Demo { keep } => demo(keep),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Invalid) => ExitCode::from(1),
        Ok(Outcome::Usage) => ExitCode::from(2),
        Ok(Outcome::Widened | Outcome::Broke) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `segward demo`: exit code 1 when any scenario did not behave as expected.
fn demo(keep: bool) -> anyhow::Result<Outcome> {
    let failures = crate::demo::run(keep)?;
    Ok(if failures == 0 {
        Outcome::Success
    } else {
        Outcome::Invalid
    })
}
