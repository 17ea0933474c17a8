//! Process log set-up for `segward run`: human-readable lines on stderr filtered by
//! `SEGWARD_LOG` (`info`, or per target: `segward=debug,hyper=warn`; default `info`), and
//! the decision log's JSON lines on stderr whatever that filter says (docs/cli.md: "Logs
//! go to stderr"). Decision lines are written in batches ([`super::sink`]); call [`flush`]
//! before the process exits.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use super::decision_log::{DecisionLayer, TARGET};
use super::sink::Stderr;

/// The environment variable holding the log filter, e.g. `SEGWARD_LOG=debug`.
pub const FILTER_ENV: &str = "SEGWARD_LOG";

/// Installs the process-wide subscriber; a second call (tests) keeps the first one.
///
/// # Errors
/// A `SEGWARD_LOG` value that is not a valid filter.
pub fn init() -> Result<(), String> {
    let filter = match std::env::var(FILTER_ENV) {
        Ok(text) => text.parse::<Targets>().map_err(|e| {
            format!("{FILTER_ENV}={text}: {e}; write e.g. info or segward=debug,hyper=warn")
        })?,
        Err(_) => Targets::new().with_default(Level::INFO),
    };
    // Decision lines have their own layer; keep them out of the human-readable one.
    let filter = filter.with_target(TARGET, LevelFilter::OFF);
    let stderr = Stderr::global();
    let text = fmt::layer()
        .with_writer(stderr.text())
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter);
    let decisions = DecisionLayer::new(stderr.decisions())
        .with_filter(Targets::new().with_target(TARGET, Level::INFO));
    // Ignore "already set": a test harness or an embedding program got there first.
    let _ = tracing_subscriber::registry()
        .with(text)
        .with(decisions)
        .try_init();
    Ok(())
}

/// Writes out the decision lines not yet on stderr; call before exiting.
pub fn flush() {
    Stderr::global().flush();
}
