//! The readers against hostile and odd input: every line is counted or skipped with its
//! place, never a panic.

use std::io::{Cursor, Write as _};

use super::*;

const ALLOW: &str = r#"{"time":"2026-11-23T16:36:06.972123Z","request_id":"a1","direction":"inbound","source_id":"spiffe://example.org/ns/prod/sa/web","destination_id":"spiffe://example.org/ns/prod/sa/api","method":"GET","path":"/v1/x","decision":"allow","rule":"web-reads-api","reason":"allow-rule","policy_version":"sha256:1","status":200,"duration_ms":0.1}"#;

fn read_text(bytes: &[u8]) -> (Observations, Read) {
    let mut obs = Observations::default();
    let mut read = Read::default();
    log_lines(
        &mut Cursor::new(bytes.to_vec()),
        "test.log",
        &mut obs,
        &mut read,
    );
    (obs, read)
}

#[test]
fn decision_lines_are_counted_by_key_with_first_and_last_seen() {
    let later = ALLOW.replace("16:36:06", "16:40:00");
    let text = format!("{ALLOW}\n{later}\n2026-11-23T16:40:00Z {ALLOW}\n");

    let (obs, read) = read_text(text.as_bytes());

    assert_eq!(read.skipped.total(), 0, "{:?}", read.skipped);
    assert_eq!(obs.len(), 1);
    let (key, stats) = obs.sorted()[0];
    assert_eq!(key.path, "/v1/x");
    assert_eq!(key.rule, Some("web-reads-api"));
    assert_eq!(
        stats.count, 3,
        "a timestamp prefix before the JSON is allowed"
    );
    assert_eq!(
        stats.first,
        crate::evidence::time::parse("2026-11-23T16:36:06Z")
    );
    assert_eq!(
        stats.last,
        crate::evidence::time::parse("2026-11-23T16:40:00Z")
    );
    assert!(!obs.sampled);
}

#[test]
fn an_ext_authz_line_is_its_own_direction_and_keeps_it_through_the_key() {
    let ext_authz = ALLOW.replace("\"inbound\"", "\"ext_authz\"");
    let text = format!("{ALLOW}\n{ext_authz}\n");

    let (obs, read) = read_text(text.as_bytes());

    assert_eq!(read.skipped.total(), 0, "{:?}", read.skipped);
    let mut directions: Vec<_> = obs.sorted().iter().map(|(k, _)| k.direction).collect();
    directions.sort();
    assert_eq!(directions, [Direction::Inbound, Direction::ExtAuthz]);
}

#[test]
fn truncated_foreign_huge_and_non_utf8_lines_are_skipped_with_their_line_numbers() {
    let mut text = Vec::new();
    writeln!(text, "{ALLOW}").unwrap(); // 1
    writeln!(text, "{}", &ALLOW[..ALLOW.len() / 2]).unwrap(); // 2 truncated
    writeln!(text, "Dec  7 15:36:51 host sshd[42]: Accepted publickey").unwrap(); // 3
    text.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024)); // 4: 10 MB
    text.push(b'\n');
    text.extend_from_slice(b"{\"decision\":\"allow\",\"path\":\"/\xff\xfe\"}\n"); // 5
    writeln!(text, "{{\"level\":\"info\",\"msg\":\"listening\"}}").unwrap(); // 6
    writeln!(text).unwrap(); // 7 blank: nothing
    writeln!(text, "{ALLOW}").unwrap(); // 8
    text.extend_from_slice(&ALLOW.as_bytes()[..40]); // 9: cut at end of file

    let (obs, read) = read_text(&text);

    assert_eq!(obs.counted, 2);
    assert_eq!(read.lines, 9);
    let at: Vec<(u64, &str)> = read
        .skipped
        .examples
        .iter()
        .map(|(_, l, w)| (*l, *w))
        .collect();
    assert_eq!(
        at,
        [
            (2, "truncated"),
            (3, "not-json"),
            (4, "too-long"),
            (5, "invalid-utf8"),
            (6, "not-a-decision-line"),
            (9, "truncated"),
        ]
    );
    assert!(
        read.skipped
            .examples
            .iter()
            .all(|(f, _, _)| f == "test.log")
    );
    assert_eq!(read.skipped.total(), 6);
}

#[test]
fn tcp_connections_count_once_by_their_open_line_and_refusals_are_not_replayable() {
    let open = r#"{"time":"2026-11-23T16:36:06Z","request_id":"c1","direction":"outbound","protocol":"tcp","event":"open","source_id":"spiffe://example.org/a","destination_id":"spiffe://example.org/db","method":"","path":"","decision":"allow","rule":"a-db","reason":"allow-rule","policy_version":"sha256:1"}"#;
    let close = open.replace("\"open\"", "\"close\"");
    let refused = r#"{"time":"2026-11-23T16:36:06Z","request_id":"r1","direction":"outbound","source_id":"spiffe://example.org/a","method":"GET","path":"/x","decision":"deny","reason":"unknown-destination","status":403}"#;
    let sampled = ALLOW.replace(
        "\"duration_ms\":0.1",
        "\"duration_ms\":0.1,\"sampled\":true",
    );
    let text = format!("{open}\n{close}\n{refused}\n{sampled}\n");

    let (obs, read) = read_text(text.as_bytes());

    assert_eq!(read.skipped.total(), 0, "{:?}", read.skipped);
    assert_eq!(obs.counted, 2);
    assert_eq!(obs.refused, 1);
    assert!(
        obs.sampled,
        "a sampled line makes every count a lower bound"
    );
    let tcp = obs
        .iter()
        .find(|(k, _)| k.protocol == Protocol::Tcp)
        .unwrap();
    assert_eq!((tcp.0.method, tcp.0.path, tcp.1.count), ("", "", 1));
}

#[test]
fn gzip_is_read_by_its_magic_bytes_and_a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("rotated.log.1");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    for _ in 0..1000 {
        writeln!(encoder, "{ALLOW}").unwrap();
    }
    encoder.finish().unwrap();
    let plain = dir.path().join("now.log");
    std::fs::write(&plain, format!("{ALLOW}\n")).unwrap();

    let mut obs = Observations::default();
    let mut read = Read::default();
    read_logs(&[&gz, &plain], &mut obs, &mut read).unwrap();
    assert_eq!(
        (obs.counted, read.files, read.skipped.total()),
        (1001, 2, 0)
    );

    let missing = dir.path().join("nope.log");
    let err = read_logs(&[&missing], &mut obs, &mut read).unwrap_err();
    assert!(err.to_string().contains("nope.log"), "{err}");
}

#[test]
fn a_gzip_stream_cut_short_is_a_skipped_line_where_it_broke() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..2000 {
        writeln!(encoder, "{ALLOW}").unwrap();
    }
    let whole = encoder.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gz");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();

    let mut obs = Observations::default();
    let mut read = Read::default();
    read_logs(&[&cut], &mut obs, &mut read).unwrap();

    assert!(obs.counted < 2000, "{}", obs.counted);
    assert_eq!(read.skipped.total(), 1, "{:?}", read.skipped);
}

#[test]
fn observations_as_csv_and_json_lines_give_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("obs.csv");
    std::fs::write(
        &csv,
        "source_id,destination_id,direction,protocol,method,path,decision,rule,reason,count,first_seen,last_seen\n\
         spiffe://example.org/a,spiffe://example.org/b,inbound,,GET,\"/v1/a,b\",allow,r1,allow-rule,7,2026-11-23 16:36:06,2026-11-24 10:00:00\n\
         spiffe://example.org/a,spiffe://example.org/db,outbound,tcp,,,deny,,default-deny,2,2026-11-23 16:36:06,2026-11-23 16:36:06\n\
         not,enough\n",
    )
    .unwrap();
    let jsonl = dir.path().join("obs.jsonl");
    std::fs::write(
        &jsonl,
        "{\"source_id\":\"spiffe://example.org/a\",\"destination_id\":\"spiffe://example.org/b\",\"direction\":\"inbound\",\"protocol\":null,\"method\":\"GET\",\"path\":\"/v1/a,b\",\"decision\":\"allow\",\"rule\":\"r1\",\"reason\":\"allow-rule\",\"count\":7,\"first_seen\":\"2026-11-23T16:36:06Z\",\"last_seen\":\"2026-11-24T10:00:00Z\"}\n\
         {\"source_id\":\"spiffe://example.org/a\",\"destination_id\":\"spiffe://example.org/db\",\"direction\":\"outbound\",\"protocol\":\"tcp\",\"method\":\"\",\"path\":\"\",\"decision\":\"deny\",\"rule\":null,\"reason\":\"default-deny\",\"count\":2,\"first_seen\":\"2026-11-23T16:36:06Z\",\"last_seen\":\"2026-11-23T16:36:06Z\"}\n",
    )
    .unwrap();

    let read_one = |path: &std::path::Path| {
        let mut obs = Observations::default();
        let mut read = Read::default();
        read_observations(&[path], &mut obs, &mut read).unwrap();
        let keys: Vec<String> = obs
            .sorted()
            .iter()
            .map(|(k, s)| format!("{k:?} {s:?}"))
            .collect();
        (keys, read.skipped)
    };
    let (from_csv, csv_skipped) = read_one(&csv);
    let (from_json, json_skipped) = read_one(&jsonl);

    assert_eq!(from_csv.len(), 2);
    assert_eq!(from_csv, from_json);
    assert_eq!(
        csv_skipped.examples,
        [(csv.display().to_string(), 4, "not-an-observation")]
    );
    assert_eq!(json_skipped.total(), 0);
}
