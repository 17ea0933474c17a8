//! Questions asked *of* a compiled policy, never on the request path (docs/blast-radius.md): the
//! blast radius ([`reach()`]: exact edges between identity classes), what a change widens or
//! narrows ([`diff()`], printed by [`changes_text`]), the lints of `policy check` ([`lint`])
//! and the data of `policy report` ([`report`]). A child of `policy` so that it reads the
//! compiled index (segments, rules, keys, identity trie) without that index being opened to
//! the rest of the crate; `policy` itself holds only the language and the decision.
//! PURE: no I/O.

mod diff;
pub mod lint;
mod reach;
mod region;
pub mod report;

pub use diff::{Change, Diff, Layout, PairChange, change_line, changes_text, diff};
pub use reach::{
    ANY_DESTINATION, Edge, MAX_LISTED_PAIRS, Methods, Party, QueryError, Reach, ReachError,
    Selector, SelectorError, UNSEGMENTED, identity_classes, reach, reach_texts,
};
