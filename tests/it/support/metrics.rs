//! Reading `/metrics` in tests: the exposition parsed strictly, so that a malformed line fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::StatusCode;

use super::client::PlainClient;

/// `GET /metrics` from the admin listener at `admin`, parsed.
pub async fn scrape(admin: SocketAddr) -> BTreeMap<String, f64> {
    let reply = PlainClient::get(admin, "/metrics").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    parse_exposition(&reply.text())
}

/// Parses Prometheus/OpenMetrics text: every line is a comment or `series value`; panics on
/// anything else, so a malformed exposition fails the test.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    let mut series = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name_ok = name
            .split('{')
            .next()
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert!(name_ok, "bad series name in {line}");
        series.insert(name.to_owned(), value);
    }
    series
}

/// The value of `series`, 0 if absent.
pub fn count(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}
