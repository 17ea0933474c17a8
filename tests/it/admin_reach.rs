//! The admin `/reach` endpoint (docs/operations.md, §9; issue 14 part 5) on a real sidecar: it
//! answers exactly what the library's reach computes on the same policy text, refuses bad
//! queries with a JSON error, and follows a hot reload of the policy.

use std::fs;
use std::time::Duration;

use http::StatusCode;
use http_body_util::Full;
use segward::app::Sidecar;
use serde_json::Value;

use crate::support::backend::Backend;
use crate::support::client::{PlainClient, Reply, request};
use crate::support::eventually;
use crate::support::pki::Pki;
use crate::support::sidecar::{inbound_block, start, write_config, write_policy};

const API: &str = "spiffe://example.org/ns/prod/sa/api";

const SEGMENTS: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
  staging-workloads: { identities: ["spiffe://example.org/ns/staging/**"] }
"#;

const WEB_CALLS_API: &str = r#"
  - name: web-calls-api
    from: [web]
    to: [api]
    paths: ["/v1/**"]
"#;

const STAGING_CALLS_API: &str = r#"
  - name: staging-calls-api
    from: [staging-workloads]
    to: [api]
    methods: [GET]
    paths: ["/v1/health"]
"#;

/// Hot reloads are picked up well within this.
const WITHIN: Duration = Duration::from_secs(5);

fn policy(rules: &[&str]) -> String {
    format!("{SEGMENTS}rules:{}", rules.concat())
}

/// api's inbound sidecar on `text`, and where its policy file is.
struct Api {
    policy_file: std::path::PathBuf,
    sidecar: Sidecar,
    _backend: Backend,
    _pki: Pki,
}

impl Api {
    async fn start(text: &str) -> Api {
        let pki = Pki::new(&["example.org"]);
        let backend = Backend::start().await;
        let dir = write_policy(&pki, text);
        let listeners = inbound_block(backend.addr());
        let config = write_config(&pki, &pki.issue(API), &["example.org"], &dir, &listeners);
        let sidecar = start(&config, |_| {}).await;
        Api {
            policy_file: dir.join("policy.yaml"),
            sidecar,
            _backend: backend,
            _pki: pki,
        }
    }

    async fn admin(&self, target: &str) -> Reply {
        PlainClient::get(self.sidecar.admin_addr(), target)
            .await
            .unwrap()
    }

    /// `/reach?query`, checked to be JSON; returns the status and the parsed body.
    async fn reach(&self, query: &str) -> (StatusCode, Value) {
        let reply = self.admin(&format!("/reach?{query}")).await;
        assert_eq!(reply.headers["content-type"], "application/json", "{query}");
        (reply.status, serde_json::from_slice(&reply.body).unwrap())
    }

    async fn version(&self) -> Value {
        let reply = self.admin("/policy").await;
        serde_json::from_slice::<Value>(&reply.body).unwrap()["version"].clone()
    }
}

/// What `policy reach --json --from FROM --to TO` prints for `text`, parsed.
fn library_reach(text: &str, from: &str, to: &str) -> Value {
    let compiled = segward::policy::from_text("policy.yaml", text).unwrap();
    serde_json::to_value(segward::policy::reach_texts(&compiled, from, to).unwrap()).unwrap()
}

fn edges(answer: &Value) -> Vec<(String, String)> {
    let side = |e: &Value, k: &str| e[k].as_str().unwrap().to_owned();
    let edges = answer["edges"].as_array().unwrap();
    edges
        .iter()
        .map(|e| (side(e, "source"), side(e, "destination")))
        .collect()
}

#[tokio::test]
async fn reach_from_a_segment_or_to_one_is_what_the_library_computes_on_the_policy_in_force() {
    let text = policy(&[WEB_CALLS_API, STAGING_CALLS_API]);
    let api = Api::start(&text).await;

    let (status, from_web) = api.reach("from=web").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(from_web, library_reach(&text, "web", "*"));
    assert_eq!(edges(&from_web), [("web".into(), "api".into())]);

    let (status, to_api) = api.reach("to=api").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(to_api, library_reach(&text, "*", "api"));
    assert_eq!(
        edges(&to_api).len(),
        2,
        "web and staging reach api: {to_api}"
    );

    // A percent-encoded ID pattern, both sides given.
    let staging = "spiffe://example.org/ns/staging/**";
    let query = "from=spiffe%3A%2F%2Fexample.org%2Fns%2Fstaging%2F%2A%2A&to=api";
    let (status, leaked) = api.reach(query).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(leaked, library_reach(&text, staging, "api"));
    assert_eq!(leaked["query"]["from"], staging);
    // As the README's curl sends it, unencoded: the same answer.
    assert_eq!(api.reach(&format!("from={staging}&to=api")).await.1, leaked);
}

#[tokio::test]
async fn a_bad_reach_query_is_a_400_with_a_json_error() {
    // The sidecar holds its slice (docs/fleet.md "Slices"): the hint names a segment one of
    // api's rules uses.
    let api = Api::start(&policy(&[WEB_CALLS_API, STAGING_CALLS_API])).await;

    let (status, body) = api.reach("from=staging-workloadz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("did you mean `staging-workloads`?"),
        "{error}"
    );

    for query in ["", "from=web&from=api", "from=web&depth=2", "to=%zz"] {
        let (status, body) = api.reach(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    let (_, body) = api.reach("").await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("give from= or to=")
    );

    let mut conn = PlainClient::connect(api.sidecar.admin_addr())
        .await
        .unwrap();
    let post = request("POST", "/reach?from=web").body(Full::default());
    let reply = conn.send(post.unwrap()).await.unwrap();
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn reach_answers_from_the_new_policy_after_a_hot_reload() {
    let old = policy(&[WEB_CALLS_API]);
    let api = Api::start(&old).await;
    let (_, before) = api.reach("to=api").await;
    assert_eq!(edges(&before), [("web".into(), "api".into())]);

    let new = policy(&[STAGING_CALLS_API]);
    let version = segward::policy::from_text("policy.yaml", &new)
        .unwrap()
        .version()
        .to_owned();
    // As editors save: a whole new file renamed over the old one.
    let temp = api.policy_file.with_extension("yaml.swp");
    fs::write(&temp, &new).unwrap();
    fs::rename(&temp, &api.policy_file).unwrap();
    assert!(eventually(WITHIN, || async { api.version().await == version.as_str() }).await);

    let (status, after) = api.reach("to=api").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, library_reach(&new, "*", "api"));
    assert_eq!(edges(&after), [("staging-workloads".into(), "api".into())]);
    assert_eq!(after["policy_version"], version.as_str());
}
