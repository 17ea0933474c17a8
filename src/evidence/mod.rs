//! Least privilege from evidence (docs/least-privilege.md): what the fleet really did, read
//! from the decision log the sidecars write (docs/operations.md#decision-log) or from
//! observations aggregated elsewhere, and what a policy makes of it.
//!
//! - [`line`]: one decision-log line → the facts of one observed request or connection;
//! - [`observe`]: [`Observations`], the distinct (who, what, decision) keys with their counts
//!   and first/last seen — memory grows with distinct keys, never with lines;
//! - [`read`]: the readers — decision-log files (many, `.gz`, `-` for stdin) and
//!   observation files (JSON lines or CSV), streaming, every unreadable line counted in
//!   [`Skipped`] with its file and line number;
//! - [`replay`]: every observation decided again under another policy, the flips grouped;
//! - [`learn`]: allow rules covering the traffic that went through, paths generalized only
//!   where the evidence says a position varies;
//! - [`unused`]: what of a policy's allow rules the evidence never used, and the rules
//!   narrowed to their use.
//!
//! PURE apart from `read` (std files and gzip): no async runtime, no logging — values in,
//! values out; `cli/policy/` prints them.

pub mod learn;
pub mod line;
pub mod observe;
pub mod read;
pub mod replay;
pub mod time;
pub mod unused;

pub use observe::{Key, Observations, Protocol, Stats};
pub use read::{Skipped, read_logs, read_observations};
pub use replay::{Flip, Replay, replay};
