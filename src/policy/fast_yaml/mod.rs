//! The fast path of policy YAML (docs/performance.md, "Fleet-scale policy"): a strict subset
//! of block YAML — the way operators and `policy slice` write policies — read straight into
//! serde's data model for the same `Deserialize` types serde-saphyr fills ([`source`]
//! (super::source), `Spanned` locations included). On the bench fleet (7.3 MB) it parses
//! ~10× faster than serde-saphyr, which was most of a whole-fleet load.
//!
//! It never decides alone what a file means when it is unsure: anything outside the subset
//! (anchors, tags, block scalars, multi-line scalars, tabs, duplicate keys, a scalar whose
//! type YAML could resolve otherwise, ...) and every error, of syntax or of shape (an unknown
//! key, a missing field), returns `None`, and `load.rs` parses the file with serde-saphyr
//! instead — so error messages, with file, line and column, are serde-saphyr's as before.
//! [`check_against_saphyr`] is the differential check the tests, the property tests and the
//! fuzz target (`fuzz/fuzz_targets/policy_yaml_fast.rs`) run: whatever the fast path
//! accepts, serde-saphyr accepts with the same value.

mod de;
mod scan;

use serde::Deserialize;
use serde::de::DeserializeSeed;

use super::load::parse_with_saphyr;
use super::source::PolicyDoc;

/// Parses `text` on the fast path; `None` if it is outside the subset or not a valid `T`.
pub fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    let mut de = de::Deserializer::new(text).ok()?;
    let value = T::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// Reads `text` on the fast path into `seed` (a reader that handles the document as it
/// goes, `slice/stream.rs`); `None` if it is outside the subset or `seed` refuses it.
pub fn parse_seed<'a, S: DeserializeSeed<'a>>(text: &'a str, seed: S) -> Option<S::Value> {
    let mut de = de::Deserializer::new(text).ok()?;
    let value = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// The differential check of the fast path against serde-saphyr on one policy text:
/// `Ok(true)` when the fast path read it and serde-saphyr reads the same document (every
/// value, line and column), `Ok(false)` when the fast path left it to serde-saphyr, `Err`
/// naming the first difference otherwise.
///
/// # Errors
/// The fast path accepted a text serde-saphyr refuses, or read it differently.
pub fn check_against_saphyr(text: &str) -> Result<bool, String> {
    let Some(fast) = parse::<Option<PolicyDoc>>(text) else {
        return Ok(false);
    };
    let slow = parse_with_saphyr(text)
        .map_err(|e| format!("the fast path accepted what serde-saphyr refuses: {e}"))?;
    let (fast, slow) = (fast.unwrap_or_default(), slow.unwrap_or_default());
    same(&fast.segments.0, &slow.segments.0, "segments")?;
    same(&fast.rules, &slow.rules, "rules")?;
    same(&fast.revoked, &slow.revoked, "revoked")?;
    same(&fast.tests, &slow.tests, "tests")?;
    Ok(true)
}

/// Entry by entry, by their debug form (values, lines and columns).
fn same<T: std::fmt::Debug>(fast: &[T], slow: &[T], what: &str) -> Result<(), String> {
    if fast.len() != slow.len() {
        return Err(format!(
            "{what}: {} entries, serde-saphyr {}",
            fast.len(),
            slow.len()
        ));
    }
    for (i, (a, b)) in fast.iter().zip(slow).enumerate() {
        let (a, b) = (format!("{a:?}"), format!("{b:?}"));
        if a != b {
            return Err(format!("{what}[{i}]:\n fast: {a}\n saphyr: {b}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
