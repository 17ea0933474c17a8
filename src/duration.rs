//! The one reader of durations a person types: `--ttl 24h`, `--until 30m`, `--warn-within 7d`
//! and the config's timeouts (`500ms`, `10s`). One grammar — a positive whole number and one
//! unit, nothing else (no spaces, signs, fractions or compound `1h30m`) — with the units and
//! the ceiling each caller allows, so `certs` and `config` cannot drift apart.
//! PURE: std only.

use std::time::Duration;

/// Which units a caller accepts and the longest duration it allows.
#[derive(Debug, Clone, Copy)]
pub struct Grammar {
    /// Unit suffixes and their length in milliseconds, longest suffix first (`ms` before `s`).
    units: &'static [(&'static str, u64)],
    /// The longest duration accepted.
    pub max: Duration,
}

const MS: (&str, u64) = ("ms", 1);
const S: (&str, u64) = ("s", 1_000);
const M: (&str, u64) = ("m", 60_000);
const H: (&str, u64) = ("h", 3_600_000);
const D: (&str, u64) = ("d", 86_400_000);

/// Certificate lifetimes and policy horizons: `s`, `m`, `h`, `d`, at most 3650 days.
pub const TTL: Grammar = Grammar {
    units: &[S, M, H, D],
    max: Duration::from_secs(3650 * 86_400),
};

/// The sidecar config's timeouts: `ms`, `s`, `m`, `h`, at most a day.
pub const TIMEOUT: Grammar = Grammar {
    units: &[MS, S, M, H],
    max: Duration::from_secs(86_400),
};

/// Why a text is not a duration of its grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty")]
    Empty,
    /// The text ends in a digit: a number without its unit.
    #[error("missing unit")]
    MissingUnit,
    /// The text ends in something that is not one of the grammar's units.
    #[error("unknown unit")]
    UnknownUnit,
    /// What precedes the unit is not a non-empty run of ASCII digits.
    #[error("not a whole number before the unit")]
    NotWholeNumber,
    /// Zero of any unit: a duration must be longer than zero.
    #[error("zero")]
    Zero,
    /// Longer than the grammar's [`Grammar::max`] (or than any `u64` can count).
    #[error("too long")]
    TooLong,
}

/// Reads `text` by `grammar`.
///
/// # Errors
/// The [`DurationError`] naming the first rule `text` breaks.
pub fn parse(text: &str, grammar: &Grammar) -> Result<Duration, DurationError> {
    let last = text.chars().last().ok_or(DurationError::Empty)?;
    let Some((number, unit_ms)) = grammar
        .units
        .iter()
        .find_map(|&(suffix, ms)| text.strip_suffix(suffix).map(|n| (n, ms)))
    else {
        return Err(if last.is_ascii_digit() {
            DurationError::MissingUnit
        } else {
            DurationError::UnknownUnit
        });
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DurationError::NotWholeNumber);
    }
    // Invariant: `number` is all ASCII digits, so the only way `parse` fails is overflow.
    let ms = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .ok_or(DurationError::TooLong)?;
    match Duration::from_millis(ms) {
        d if d.is_zero() => Err(DurationError::Zero),
        d if d > grammar.max => Err(DurationError::TooLong),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One row per rule of the grammar, for both grammars the crate uses.
    #[test]
    fn each_rule_of_the_grammar_has_its_error() {
        use DurationError::*;
        let table: &[(&str, &Grammar, Result<Duration, DurationError>)] = &[
            ("500ms", &TIMEOUT, Ok(Duration::from_millis(500))),
            ("500ms", &TTL, Err(NotWholeNumber)),
            ("10s", &TIMEOUT, Ok(Duration::from_secs(10))),
            ("007m", &TTL, Ok(Duration::from_secs(420))),
            ("7d", &TTL, Ok(Duration::from_secs(604_800))),
            ("2d", &TIMEOUT, Err(UnknownUnit)),
            ("", &TTL, Err(Empty)),
            ("24", &TTL, Err(MissingUnit)),
            ("24H", &TTL, Err(UnknownUnit)),
            ("5µ", &TTL, Err(UnknownUnit)),
            ("h", &TTL, Err(NotWholeNumber)),
            ("1.5s", &TIMEOUT, Err(NotWholeNumber)),
            ("-1s", &TIMEOUT, Err(NotWholeNumber)),
            ("10 s", &TIMEOUT, Err(NotWholeNumber)),
            ("87600h1s", &TTL, Err(NotWholeNumber)),
            ("0s", &TIMEOUT, Err(Zero)),
            ("25h", &TIMEOUT, Err(TooLong)),
            ("3651d", &TTL, Err(TooLong)),
            ("99999999999999999999s", &TTL, Err(TooLong)),
            ("18446744073709551615d", &TTL, Err(TooLong)),
        ];
        for (text, grammar, expected) in table {
            assert_eq!(parse(text, grammar), *expected, "{text}");
        }
    }
}
