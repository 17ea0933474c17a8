//! When a containment lifts itself: `--until` read as a duration from now (`30m`, `24h`,
//! `7d`, as `certs issue --ttl`) or an RFC 3339 time.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ContainError;
use super::file::rfc3339;

/// Reads `--until`: a duration from `now` or an RFC 3339 time, in UTC at whole seconds,
/// which must be after `now`.
///
/// # Errors
/// The text is neither, or the time is not after `now`.
pub fn parse_until(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, ContainError> {
    let looks_like_time = text.contains('-') || text.contains(':') || text.contains('T');
    let until = if looks_like_time {
        OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| ContainError::UntilNotRfc3339(text.to_owned(), e.to_string()))?
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .map_err(|e| ContainError::UntilUnrepresentable(text.to_owned(), e.to_string()))?
    } else {
        let ttl: Duration = crate::certs::parse_ttl(text)
            .map_err(|e| ContainError::UntilNotADuration(e.to_string()))?;
        now.checked_add(time::Duration::seconds(ttl.as_secs() as i64))
            .ok_or_else(|| ContainError::UntilTooFar(text.to_owned()))?
    };
    if until <= now {
        return Err(ContainError::UntilNotInFuture(rfc3339(until), rfc3339(now)));
    }
    Ok(until)
}

#[cfg(test)]
mod tests;
