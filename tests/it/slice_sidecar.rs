//! A real sidecar compiles only its slice (docs/fleet.md "Slices"): `/policy` shows the rules
//! in force and the fleet's, with the whole policy's version; requests the whole policy allows
//! go through and those it denies are refused before the backend; a reload that changes only
//! other workloads' rules leaves the slice as it was and counts the fleet anew.

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::support::backend::Backend;
use crate::support::client::{Alpn, MtlsClient, PlainClient};
use crate::support::eventually;
use crate::support::pki::Pki;
use crate::support::sidecar::{inbound_block, start, write_config, write_policy};
use segward::app::Sidecar;
use segward::identity::SpiffeId;
use segward::path::normalize;
use segward::policy::{self, Decision, Request};

const API: &str = "spiffe://example.org/ns/prod/sa/api";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const BATCH: &str = "spiffe://example.org/ns/prod/sa/batch";
const CI: &str = "spiffe://example.org/ns/staging/sa/ci";

/// Other workloads and the rules between them: the bulk of the fleet, none of it api's.
fn fleet(others: usize) -> String {
    let mut text = String::from(
        r#"segments:
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"], labels: { env: prod } }
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"], labels: { env: prod } }
  batch: { identities: ["spiffe://example.org/ns/prod/sa/batch"], labels: { env: prod } }
  ci: { identities: ["spiffe://example.org/ns/staging/**"], labels: { env: staging } }
"#,
    );
    for i in 0..others {
        let _ = writeln!(
            text,
            "  svc-{i}: {{ identities: [\"spiffe://example.org/ns/other/sa/svc-{i}\"] }}"
        );
    }
    text.push_str(
        r#"rules:
  - { name: web-reads-api, from: [web], to: [api], methods: [GET], paths: ["/v1/**"] }
  - { name: batch-reads-api, from: [batch], to: [api], methods: [GET] }
  - { name: no-batch-exports, effect: deny, from: [batch], to: [api], paths: ["/v1/export/**"] }
  - { name: staging-never-prod, effect: deny, from: [{ env: staging }], to: [{ env: prod }] }
  - { name: anyone-health, from: ["*"], to: [api], paths: ["/healthz"] }
"#,
    );
    for i in 1..others {
        let _ = writeln!(
            text,
            "  - {{ name: svc-{i}-calls-svc-{}, from: [svc-{i}], to: [svc-{}] }}",
            i - 1,
            i - 1
        );
    }
    text
}

/// api's sidecar on the policy folder `dir`, inbound to `backend`.
async fn start_api(pki: &Pki, dir: &std::path::Path, backend: &Backend) -> Sidecar {
    let config = write_config(
        pki,
        &pki.issue(API),
        &["example.org"],
        dir,
        &inbound_block(backend.addr()),
    );
    start(&config, |_| {}).await
}

async fn policy_json(admin: std::net::SocketAddr) -> Value {
    let reply = PlainClient::get(admin, "/policy").await.unwrap();
    serde_json::from_slice(&reply.body).unwrap()
}

#[tokio::test]
async fn a_sidecar_holds_its_slice_reports_the_fleet_and_decides_as_the_whole_policy() {
    let text = fleet(200);
    let whole = policy::from_text("policy.yaml", &text).unwrap();
    let pki = Pki::new(&["example.org"]);
    let backend = Backend::start().await;
    let dir = write_policy(&pki, &text);
    let sidecar = start_api(&pki, &dir, &backend).await;

    let shown = policy_json(sidecar.admin_addr()).await;
    // api's five rules of the fleet's 204; segments: api's rules name api, web, batch, ci
    // and the label selectors select those four — none of the 200 others.
    assert_eq!(shown["rules"], 5, "{shown}");
    assert_eq!(shown["fleet_rules"], whole.rules().len(), "{shown}");
    assert_eq!(whole.rules().len(), 204);
    assert_eq!(shown["segments"], 4, "{shown}");
    assert_eq!(shown["version"], whole.version(), "{shown}");
    assert_eq!(sidecar.live().policy().rules().len(), 5);

    // The whole policy's verdicts, then the sidecar's.
    let cases = [
        (WEB, "/v1/orders", Decision::Allow, StatusCode::OK),
        (BATCH, "/v1/orders", Decision::Allow, StatusCode::OK),
        (
            BATCH,
            "/v1/export/all",
            Decision::Deny,
            StatusCode::FORBIDDEN,
        ),
        (CI, "/healthz", Decision::Deny, StatusCode::FORBIDDEN),
        (WEB, "/v2/orders", Decision::Deny, StatusCode::FORBIDDEN),
    ];
    let api = SpiffeId::parse(API).unwrap();
    for (from, path, decision, status) in cases {
        let source = SpiffeId::parse(from).unwrap();
        let normalized = normalize(path).unwrap();
        let verdict = whole.decide(&Request {
            source: &source,
            destination: &api,
            method: "GET",
            path: &normalized,
        });
        assert_eq!(verdict.decision, decision, "{from} {path}");
        let svid = pki.issue(from);
        let client = MtlsClient::new(Some(&svid.pem), &pki.bundle_pems(), Alpn::H1);
        let reply = client
            .get(sidecar.inbound_addr().unwrap(), path)
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{from} {path}");
    }
    // The denials never reached the backend: only the two allowed requests did.
    let paths: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(paths, ["/v1/orders", "/v1/orders"]);

    // A change to other workloads' rules only: the fleet grows, api's slice is as it was.
    let grown = format!("{text}  - {{ name: svc-0-calls-svc-7, from: [svc-0], to: [svc-7] }}\n");
    fs::write(dir.join("policy.yaml"), &grown).unwrap();
    let reloaded = eventually(Duration::from_secs(5), || async {
        policy_json(sidecar.admin_addr()).await["fleet_rules"] == 205
    })
    .await;
    assert!(reloaded, "{}", policy_json(sidecar.admin_addr()).await);
    assert_eq!(policy_json(sidecar.admin_addr()).await["rules"], 5);
    sidecar.shutdown().await;
}

/// Writes `bytes` as `dir/name` the way the kubelet swaps a ConfigMap's file: whole, at once.
fn swap(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A gzip-compressed slice (what `policy slice` writes for one over 1 MiB, docs/fleet.md
/// "Slices over 1 MiB") is read inflated: decided from at start, reloaded when replaced, and a
/// corrupt one is refused like a broken policy — last good kept, error reported.
#[tokio::test]
async fn a_sidecar_reads_a_gzip_compressed_policy_and_reloads_and_refuses_it_like_yaml() {
    let text = fleet(20);
    let pki = Pki::new(&["example.org"]);
    let backend = Backend::start().await;
    let dir = write_policy(&pki, "");
    fs::remove_file(dir.join("policy.yaml")).unwrap();
    swap(&dir, "policy.yaml.gz", &policy::load::gzip(&text));
    let sidecar = start_api(&pki, &dir, &backend).await;
    let whole = policy::from_text("policy.yaml", &text).unwrap();
    assert_eq!(
        policy_json(sidecar.admin_addr()).await["version"],
        whole.version()
    );
    let get = |from: &'static str, path: &'static str| {
        let client = MtlsClient::new(Some(&pki.issue(from).pem), &pki.bundle_pems(), Alpn::H1);
        let to = sidecar.inbound_addr().unwrap();
        async move { client.get(to, path).await.unwrap().status }
    };
    assert_eq!(get(WEB, "/v1/orders").await, StatusCode::OK);
    assert_eq!(get(BATCH, "/v1/export/all").await, StatusCode::FORBIDDEN);

    // web loses its rule: the replaced file is inflated and applied.
    let rule = "  - { name: web-reads-api, from: [web], to: [api], methods: [GET], paths: [\"/v1/**\"] }\n";
    let without = text.replace(rule, "");
    assert_ne!(without, text);
    swap(&dir, "policy.yaml.gz", &policy::load::gzip(&without));
    let applied = eventually(Duration::from_secs(5), || async {
        get(WEB, "/v1/orders").await == StatusCode::FORBIDDEN
    })
    .await;
    assert!(applied, "{}", policy_json(sidecar.admin_addr()).await);

    // A file cut short is not a policy: refused, the last good one decides on.
    let reached = backend.requests().len();
    let mut cut = policy::load::gzip(&text);
    cut.truncate(cut.len() / 2);
    swap(&dir, "policy.yaml.gz", &cut);
    let failed = eventually(Duration::from_secs(5), || async {
        sidecar.reload_status().policy_error.is_some()
    })
    .await;
    assert!(failed);
    let error = sidecar.reload_status().policy_error.unwrap().to_string();
    assert!(
        error.contains("policy.yaml.gz") && error.contains("inflate"),
        "{error}"
    );
    assert_eq!(get(WEB, "/v1/orders").await, StatusCode::FORBIDDEN);
    assert_eq!(get(BATCH, "/v1/orders").await, StatusCode::OK);
    // Of the last two, only batch's reached the backend; no export ever did.
    let paths: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(paths.len(), reached + 1, "{paths:?}");
    assert!(paths.iter().all(|p| p == "/v1/orders"), "{paths:?}");
    sidecar.shutdown().await;
}
