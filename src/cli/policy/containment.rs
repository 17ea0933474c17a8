//! `policy contain`'s side of the containment file (PRODUCT.md §10): reading `--until` and
//! the atomic write into the policy folder. The file itself — id, name, YAML, scopes read
//! back — is [`crate::policy::containment`]'s, shared with `segward demo`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::policy::containment::rfc3339;

/// Reads `--until`: a duration from `now` (`30m`, `24h`, `7d`, as `certs issue --ttl`) or an
/// RFC 3339 time, in UTC at whole seconds, which must be after `now`.
pub(super) fn parse_until(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let looks_like_time = text.contains('-') || text.contains(':') || text.contains('T');
    let until = if looks_like_time {
        OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| format!("--until `{text}` is not an RFC 3339 time ({e})"))?
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .map_err(|e| format!("--until `{text}`: {e}"))?
    } else {
        let ttl: Duration = crate::certs::parse_ttl(text).map_err(|e| {
            format!("--until: {e} (or give an RFC 3339 time, e.g. 2026-12-04T13:30:00Z)")
        })?;
        now.checked_add(time::Duration::seconds(ttl.as_secs() as i64))
            .ok_or_else(|| format!("--until `{text}` is too far in the future"))?
    };
    if until <= now {
        return Err(format!(
            "--until {} is not in the future (now is {}); a containment must end later",
            rfc3339(until),
            rfc3339(now)
        ));
    }
    Ok(until)
}

/// Writes `text` as `dir/name` so that a watcher never sees it half-written: a temporary file
/// in the same folder, named with a leading `.` so the policy loader skips it, fsynced, then
/// renamed; then the folder is fsynced so the new name survives a crash. Refuses to replace a
/// file of that name (it would lift another containment).
///
/// # Errors
/// The I/O error; the temporary file is removed.
pub(super) fn write_new(dir: &Path, name: &str, text: &str) -> io::Result<PathBuf> {
    let target = dir.join(name);
    if target.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", target.display()),
        ));
    }
    let temp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, &target)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    File::open(dir)?.sync_all()?;
    Ok(target)
}

#[cfg(test)]
#[path = "containment_tests.rs"]
mod tests;
