//! System components some tests need and `cargo test` alone does not install (PostgreSQL's
//! server; chromium is the lib tests' own, in `cli::policy::report::browser`): what a test does
//! when one is missing. It skips, with one line on stderr naming the test, the component and
//! `scripts/test.sh`, or, under `SEGWARD_REQUIRE_COMPONENTS=1` (set by CI and by
//! `scripts/test.sh`), it fails.

use std::io::Write;

/// The variable under which a missing component fails the test instead of skipping it.
pub const REQUIRE: &str = "SEGWARD_REQUIRE_COMPONENTS";

/// Whether `test` may run: `true` when the component is `here`. Otherwise panics under
/// [`REQUIRE`]`=1`, else writes the skip line straight to stderr (libtest does not capture
/// that, so a passing run still shows it) and returns `false`.
pub fn present_or_skip(test: &str, component: &str, here: bool) -> bool {
    if here {
        return true;
    }
    if std::env::var_os(REQUIRE).is_some_and(|v| v == "1") {
        panic!("{test}: {component} is missing, and {REQUIRE}=1; scripts/test.sh installs it");
    }
    // One write of the whole line, so parallel tests' output cannot split it.
    let line = format!(
        "SKIPPED {test}: {component} is missing; scripts/test.sh installs it and runs the tests\n"
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}
