//! What segward tells its operator: the decision log (one JSON line per request, docs/operations.md)
//! and the process log set-up. Uses only `policy`'s types; never decides anything.

pub mod decision_log;
pub mod logging;
pub mod metrics;
pub mod sink;
