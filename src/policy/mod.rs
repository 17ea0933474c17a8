//! The segment policy of PRODUCT.md §3: load YAML, compile to an indexed
//! [`CompiledPolicy`], [`CompiledPolicy::decide`] per request, lint for `policy check`, and
//! the blast radius: [`CompiledPolicy::reach`] (exact edges between identity classes) and
//! [`diff`] (what a change widens or narrows).
//! PURE: no sockets, no async runtime, no logging — it returns values and the edges report them.
#![warn(missing_docs)]

pub mod classify;
pub mod compile;
pub mod compiled;
pub mod connection;
pub mod decide;
pub mod diff;
pub mod error;
pub mod explain;
pub mod lint;
pub mod load;
pub mod method;
pub mod pattern;
pub mod reach;
mod region;
pub mod source;
mod tests_run;
pub mod trie;
mod validate;
mod version;

use std::path::Path;

pub use classify::Classification;
pub use compile::{compile, compile_at, successor, unix_now};
pub use compiled::{CompiledPolicy, Rule, Segment, Target};
pub use decide::{Decision, Explanation, Reason, Request, Verdict};
pub use error::{PolicyError, PolicyErrorKind, PolicyErrors};
pub use explain::{Candidate, Check, Miss, RuleExplanation};
pub use load::PolicySource;
pub use reach::{Edge, Methods, Party, Reach, ReachError, Selector, SelectorError};
pub use validate::{format_time, parse_time};

/// Reads and compiles the policy at `path` (a file or a folder of `*.yaml`).
///
/// # Errors
/// Every problem in every file, each at file:line:col, including failing `tests:`.
pub fn load(path: &Path) -> Result<CompiledPolicy, PolicyErrors> {
    compile(&PolicySource::load(path)?)
}

/// Compiles policy text held in memory; `name` stands for the file name in errors.
///
/// # Errors
/// As [`load()`].
pub fn from_text(name: &str, text: &str) -> Result<CompiledPolicy, PolicyErrors> {
    compile(&PolicySource::from_texts([(name, text)])?)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod expiry_tests;
