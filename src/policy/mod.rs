//! The segment policy of docs/policy-language.md, in two parts and a child room:
//! - the language: YAML [`source`] read by [`load`](mod@load), checked by `validate`, and
//!   [`compile`](mod@compile)d into an indexed [`CompiledPolicy`] (patterns, methods, the
//!   identity trie and classifier, the version hash);
//! - the decision, the only part on the request path: [`CompiledPolicy::decide`] per request,
//!   [`CompiledPolicy::decide_connection`] per TCP connection, [`CompiledPolicy::explain`]
//!   for `policy explain`, and the [`containment`] records that revoke identities;
//! - [`slice`]: the part of a policy one identity's decisions can use, which a sidecar
//!   compiles instead of the whole (docs/fleet.md "Slices");
//! - [`analysis`]: questions asked of a policy, never on the request path — the blast radius
//!   ([`reach()`]), what a change widens or narrows ([`diff()`]), the lints, the report's data.
//!
//! PURE: no sockets, no async runtime, no logging — it returns values and the edges report them.
#![warn(missing_docs)]

pub mod analysis;
mod assertions;
pub mod classify;
pub mod compile;
pub mod compiled;
pub mod connection;
pub mod decide;
pub mod error;
pub mod explain;
pub mod fast_yaml;
pub mod load;
pub mod method;
pub mod pattern;
pub mod slice;
pub mod source;
pub mod trie;
mod validate;
mod version;

use std::path::Path;

pub use analysis::{
    Edge, Methods, Party, QueryError, Reach, ReachError, Selector, SelectorError, diff, reach,
    reach_texts,
};
pub use classify::Classification;
pub use compile::{compile, compile_at, successor, unix_now};
pub use compiled::{CompiledPolicy, Rule, Segment, Target};
pub use decide::{Decision, Explanation, Reason, Request, Verdict};
pub use error::{PolicyError, PolicyErrorKind, PolicyErrors};
pub use explain::{Candidate, Check, Miss, RuleExplanation};
pub use load::PolicySource;
pub use slice::{Fleet, Scope, SlicePlan};
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
