//! The timestamps of evidence: RFC 3339 as the decision log writes it
//! (`2026-11-23T16:36:06.972123Z`), also with a space for `T` or an offset as SQL engines
//! export them, read to unix seconds without an allocation; written back as RFC 3339 UTC.

/// Unix seconds of `text`: `YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z|±HH:MM]`, no zone = UTC.
pub fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[from..to] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        at += 1;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
    }
    let offset = match b.get(at) {
        None | Some(b'Z' | b'z') if b.len() <= at + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == at + 6 && b[at + 3] == b':' => {
            let minutes = num(at + 1, at + 3)? * 60 + num(at + 4, at + 6)?;
            if sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Unix seconds → `2026-11-23T16:36:06Z`.
pub fn format(t: i64) -> String {
    crate::policy::format_time(t)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_stamp_and_sql_exports_read_to_the_same_second() {
        let logged = parse("2026-11-23T16:36:06.972123Z").unwrap();
        assert_eq!(
            Some(logged),
            crate::policy::parse_time("2026-11-23T16:36:06Z").ok()
        );
        assert_eq!(parse("2026-11-23 16:36:06.972"), Some(logged));
        assert_eq!(parse("2026-11-23 16:36:06"), Some(logged));
        assert_eq!(parse("2026-11-23T17:36:06+01:00"), Some(logged));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(format(logged), "2026-11-23T16:36:06Z");
    }

    #[test]
    fn anything_else_is_no_time() {
        for bad in [
            "",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-11-23T16:36:06Zjunk",
            "yesterday at noon!!",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
