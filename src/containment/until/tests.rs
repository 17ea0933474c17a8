use super::*;

fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap()
}

#[test]
fn until_is_a_duration_from_now_or_a_later_rfc3339_time() {
    let now = at("2026-12-03T13:30:00Z");
    let ok = |text: &str| parse_until(text, now).map(rfc3339);
    assert_eq!(ok("24h").as_deref(), Ok("2026-12-04T13:30:00Z"));
    assert_eq!(ok("30m").as_deref(), Ok("2026-12-03T14:00:00Z"));
    assert_eq!(ok("7d").as_deref(), Ok("2026-12-10T13:30:00Z"));
    assert_eq!(
        ok("2026-12-04T15:30:00.9+02:00").as_deref(),
        Ok("2026-12-04T13:30:00Z")
    );
    for bad in [
        "0h",
        "24",
        "1.5h",
        "-1h",
        "tomorrow",
        "2026-12-04",
        "2026-12-03T13:30:00Z",
    ] {
        assert!(parse_until(bad, now).is_err(), "{bad}");
    }
    let past = parse_until("2026-12-03T13:29:59Z", now)
        .unwrap_err()
        .to_string();
    assert!(past.contains("not in the future"), "{past}");
}
