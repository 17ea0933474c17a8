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
    let past = parse_until("2026-12-03T13:29:59Z", now).unwrap_err();
    assert!(past.contains("not in the future"), "{past}");
}

#[test]
fn a_new_file_appears_whole_and_never_replaces_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_new(dir.path(), "contain-x.yaml", "revoked: []\n").unwrap();
    assert_eq!(path, dir.path().join("contain-x.yaml"));
    assert_eq!(fs::read_to_string(&path).unwrap(), "revoked: []\n");
    let again = write_new(dir.path(), "contain-x.yaml", "revoked: [a]\n").unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read_to_string(&path).unwrap(), "revoked: []\n");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["contain-x.yaml"], "no temporary file left");
    let missing = dir.path().join("no-such-folder");
    assert!(write_new(&missing, "contain-y.yaml", "").is_err());
}
