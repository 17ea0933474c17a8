//! The decision line's format, observed through a real `tracing` subscriber.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

/// A `MakeWriter` that appends to a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

fn record() -> DecisionRecord<'static> {
    DecisionRecord {
        request_id: "00ab-1",
        direction: Direction::Inbound,
        peer_addr: Some("10.89.0.7:51234"),
        source_id: Some("spiffe://example.org/ns/prod/sa/frontend"),
        destination_id: Some("spiffe://example.org/ns/prod/sa/payments"),
        method: "POST",
        path: "/v1/charges",
        decision: "allow",
        rule: Some("frontend-creates-charges"),
        reason: "allow-rule",
        error: None,
        policy_version: Some("sha256:0123"),
        status: 200,
        duration: Duration::from_micros(1500),
        sampled: false,
    }
}

/// Runs `emit` under a subscriber holding only the decision layer; returns the output lines.
fn capture(emit: impl FnOnce()) -> Vec<String> {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::registry().with(DecisionLayer::new(buffer.clone()));
    tracing::subscriber::with_default(subscriber, emit);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn one_json_line_carries_every_field_of_product_section_6() {
    let lines = capture(|| write(&record()));

    assert_eq!(lines.len(), 1);
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    assert_eq!(line["request_id"], "00ab-1");
    assert_eq!(line["direction"], "inbound");
    assert_eq!(line["peer_addr"], "10.89.0.7:51234");
    assert_eq!(
        line["source_id"],
        "spiffe://example.org/ns/prod/sa/frontend"
    );
    assert_eq!(
        line["destination_id"],
        "spiffe://example.org/ns/prod/sa/payments"
    );
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/v1/charges");
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["rule"], "frontend-creates-charges");
    assert_eq!(line["reason"], "allow-rule");
    assert_eq!(line["policy_version"], "sha256:0123");
    assert_eq!(line["status"], 200);
    assert_eq!(line["duration_ms"], 1.5);
}

#[test]
fn absent_ids_and_rule_are_left_out_and_hostile_text_is_escaped() {
    let mut r = record();
    r.source_id = None;
    r.peer_addr = None;
    r.rule = None;
    r.policy_version = None;
    r.path = "/a\"b\\c\n{\"x\":1}";

    let lines = capture(|| write(&r));

    assert_eq!(
        lines.len(),
        1,
        "a newline in the path must not split the line"
    );
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["path"], "/a\"b\\c\n{\"x\":1}");
    assert!(line.get("source_id").is_none());
    assert!(line.get("peer_addr").is_none());
    assert!(line.get("rule").is_none());
    assert!(line.get("policy_version").is_none());
    assert!(line.get("x").is_none());
}

#[test]
fn a_sampled_line_says_so_and_an_unsampled_one_carries_no_flag() {
    let mut r = record();
    r.sampled = true;
    let sampled = capture(|| write(&r));
    let whole = capture(|| write(&record()));

    let sampled: Value = serde_json::from_str(&sampled[0]).unwrap();
    let whole: Value = serde_json::from_str(&whole[0]).unwrap();
    assert_eq!(sampled["sampled"], true, "{sampled}");
    assert!(whole.get("sampled").is_none(), "{whole}");
}

#[test]
fn only_allowed_lines_of_a_sampling_sampler_are_flagged_sampled() {
    for (sampler, allow) in [
        (Sampler::new(1.0, None), false),
        (Sampler::new(0.5, None), true),
        (Sampler::new(1.0, Some(100)), true),
    ] {
        assert_eq!(sampler.samples("allow"), allow, "{sampler:?}");
        assert!(!sampler.samples("deny") && !sampler.samples("would-deny"));
    }
}

#[test]
fn events_of_other_targets_are_not_decision_lines() {
    let lines = capture(|| tracing::info!(request_id = "x", "listening"));

    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn denies_are_always_kept_and_allows_sampled_evenly() {
    let sampler = Sampler::new(0.25, None);
    let kept = (0..100).filter(|_| sampler.keep("allow")).count();
    assert_eq!(kept, 25);
    assert!((0..100).all(|_| sampler.keep("deny") && sampler.keep("would-deny")));
    let none = Sampler::new(0.0, None);
    assert!(!(0..100).any(|_| none.keep("allow")));
}

#[test]
fn the_per_second_cap_limits_allowed_lines_but_never_denies() {
    let sampler = Sampler::new(1.0, Some(3));
    let kept = (0..10).filter(|_| sampler.keep("allow")).count();
    // All ten calls fall in the same second of the sampler's clock, barring a tick between.
    assert!((3..=6).contains(&kept), "{kept}");
    assert!((0..10).all(|_| sampler.keep("deny")));
}

#[test]
fn timestamps_are_rfc3339_utc_with_microseconds_also_across_a_second_boundary() {
    let at = |secs: u64, micros: u64| {
        let mut line = Vec::new();
        timestamp(
            &mut line,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
        );
        String::from_utf8(line).unwrap()
    };
    assert_eq!(at(1_795_453_104, 5), "2026-11-23T16:58:24.000005Z");
    assert_eq!(at(1_795_453_104, 999_999), "2026-11-23T16:58:24.999999Z");
    assert_eq!(at(1_795_453_105, 0), "2026-11-23T16:58:25.000000Z");
    assert_eq!(at(0, 1), "1970-01-01T00:00:00.000001Z");
}

#[test]
fn numbers_and_durations_are_exact_at_their_edges() {
    for (micros, text) in [
        (0u64, "0.000"),
        (7, "0.007"),
        (1_500, "1.500"),
        (12_345_678, "12345.678"),
    ] {
        let mut r = record();
        r.duration = Duration::from_micros(micros);
        r.status = 0;
        let lines = capture(|| write(&r));
        assert!(
            lines[0].contains(&format!("\"duration_ms\":{text}}}")),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("\"status\":0,"), "{}", lines[0]);
    }
}
