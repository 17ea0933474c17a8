//! Time-boxed exceptions and self-lifting containment on a running sidecar (docs/runbook.md,
//! ISSUE 15): the change happens at its instant, with no file change and no reload, on
//! connections already open (HTTP/1.1 and HTTP/2) — proven at the backend.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use segward::app::Sidecar;
use segward::config::Config;
use segward::policy::format_time;

use crate::support::backend::Backend;
use crate::support::client::{Alpn, Conn, MtlsClient, PlainClient};
use crate::support::pki::Pki;
use crate::support::sidecar::{inbound_block, write_config, write_policy};

const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const API: &str = "spiffe://example.org/ns/prod/sa/api";

const SEGMENTS: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
"#;

/// A whole unix second at least 2 s from now, and its RFC 3339 text.
fn soon() -> (u64, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = now + 3;
    (at, format_time(at as i64))
}

fn unix_now_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

struct Api {
    pki: Pki,
    backend: Backend,
    sidecar: Sidecar,
}

impl Api {
    async fn start(policy_text: &str) -> Api {
        let pki = Pki::new(&["example.org"]);
        let backend = Backend::start().await;
        let svid = pki.issue(API);
        let policy = write_policy(&pki, policy_text);
        let config = write_config(
            &pki,
            &svid,
            &["example.org"],
            &policy,
            &inbound_block(backend.addr()),
        );
        let config = Config::load(&config).unwrap();
        let sidecar = Sidecar::start(&config).await.unwrap();
        Api {
            pki,
            backend,
            sidecar,
        }
    }

    async fn connect(&self, alpn: Alpn) -> Conn {
        let svid = self.pki.issue(WEB);
        let client = MtlsClient::new(Some(&svid.pem), &self.pki.bundle_pems(), alpn);
        client
            .connect(self.sidecar.inbound_addr().unwrap())
            .await
            .unwrap()
    }

    /// `/policy`'s `next_expiry` and the `segward_policy_next_expiry_seconds` gauge.
    async fn schedule(&self) -> (serde_json::Value, i64) {
        let admin = self.sidecar.admin_addr();
        let policy = PlainClient::get(admin, "/policy").await.unwrap();
        let policy: serde_json::Value = serde_json::from_slice(&policy.body).unwrap();
        let metrics = PlainClient::get(admin, "/metrics").await.unwrap();
        let metrics = String::from_utf8(metrics.body.to_vec()).unwrap();
        let gauge = metrics
            .lines()
            .find_map(|l| l.strip_prefix("segward_policy_next_expiry_seconds "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (policy["next_expiry"].clone(), gauge)
    }

    /// Requests tagged `tag` the backend received that were sent in `[from, to)` (unix s).
    fn seen(&self, tag: &str, from: f64, to: f64) -> usize {
        let sent = |target: &str| -> Option<f64> {
            let rest = target.strip_prefix(&format!("/v1/{tag}-"))?;
            let ms: u64 = rest.split('-').next()?.parse().ok()?;
            Some(ms as f64 / 1000.0)
        };
        let requests = self.backend.requests();
        let times = requests.iter().filter_map(|r| sent(&r.target));
        times.filter(|t| *t >= from && *t < to).count()
    }
}

/// Sends requests on both connections every 50 ms across `at`; returns, per connection, the
/// statuses with the time each answer came (unix seconds).
async fn across(conns: &mut [Conn], at: u64, tag: &str) -> Vec<Vec<(f64, StatusCode)>> {
    let mut out = vec![Vec::new(); conns.len()];
    let stop = at as f64 + 1.5;
    let mut n = 0;
    while unix_now_f() < stop {
        for (i, conn) in conns.iter_mut().enumerate() {
            let path = format!("/v1/{tag}-{}-{n}", (unix_now_f() * 1000.0) as u64);
            let reply = conn.get(&path).await.expect("the connection stays open");
            out[i].push((unix_now_f(), reply.status));
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}

#[tokio::test]
async fn an_exception_expires_at_its_instant_on_open_http1_and_http2_connections() {
    let (at, text) = soon();
    let policy = format!(
        "{SEGMENTS}rules:\n  - {{ name: web-hotfix, from: [web], to: [api], paths: [\"/v1/**\"], expires: \"{text}\", owner: ana, ticket: SEC-7 }}\n"
    );
    let api = Api::start(&policy).await;
    let mut conns = [api.connect(Alpn::H1).await, api.connect(Alpn::H2).await];
    // The admin listener says what is due, and when.
    let (next, gauge) = api.schedule().await;
    assert_eq!(next, serde_json::Value::String(text.clone()));
    assert!((0..=3).contains(&gauge), "{gauge}");

    let answers = across(&mut conns, at, "x").await;
    let (next, gauge) = api.schedule().await;
    assert_eq!((next, gauge), (serde_json::Value::Null, -1));

    for (conn, answers) in answers.iter().enumerate() {
        let expiry = at as f64;
        // Allowed until the instant (allowing for the request in flight across it)...
        assert!(
            answers
                .iter()
                .filter(|(t, _)| *t < expiry - 0.1)
                .all(|(_, s)| *s == StatusCode::OK),
            "conn {conn}: {answers:?}"
        );
        // ...and refused from a moment after it on, on the same connection.
        let after: Vec<_> = answers.iter().filter(|(t, _)| *t > expiry + 0.5).collect();
        assert!(!after.is_empty(), "{answers:?}");
        assert!(
            after.iter().all(|(_, s)| *s == StatusCode::FORBIDDEN),
            "conn {conn}: {answers:?}"
        );
    }
    // The backend saw requests sent before the expiry, and none sent after it (a request
    // sent in the last 100 ms before the instant may be in flight across it).
    let at = at as f64;
    assert!(api.seen("x", 0.0, at - 0.1) > 0);
    assert_eq!(
        api.seen("x", at, f64::MAX),
        0,
        "a request sent after the expiry reached the backend"
    );
}

#[tokio::test]
async fn a_containment_with_until_lifts_itself_on_an_open_connection() {
    let (at, text) = soon();
    let policy = format!(
        "{SEGMENTS}rules:\n  - {{ name: web-calls-api, from: [web], to: [api], paths: [\"/v1/**\"] }}\nrevoked:\n  - {{ identity: \"spiffe://example.org/ns/prod/sa/*\", reason: INC-9, until: \"{text}\" }}\n"
    );
    let api = Api::start(&policy).await;
    let mut conns = [api.connect(Alpn::H1).await, api.connect(Alpn::H2).await];

    let answers = across(&mut conns, at, "c").await;

    for answers in &answers {
        let lift = at as f64;
        assert!(
            answers
                .iter()
                .filter(|(t, _)| *t < lift - 0.1)
                .all(|(_, s)| *s == StatusCode::FORBIDDEN),
            "{answers:?}"
        );
        let after: Vec<_> = answers.iter().filter(|(t, _)| *t > lift + 0.5).collect();
        assert!(
            !after.is_empty() && after.iter().all(|(_, s)| *s == StatusCode::OK),
            "{answers:?}"
        );
    }
    let at = at as f64;
    assert_eq!(
        api.seen("c", 0.0, at - 0.1),
        0,
        "nothing reached the backend while contained"
    );
    assert!(api.seen("c", at + 0.5, f64::MAX) > 0);
}
