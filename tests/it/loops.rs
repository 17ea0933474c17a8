//! Several event loops per sidecar (`limits.worker_threads`, docs/performance.md): an app's
//! connections to `web`'s outbound sidecar are spread one per loop, each loop opens its own
//! mTLS connection to `api`'s inbound sidecar, which spreads those one per loop in turn —
//! observed in `segward_loop_connections_active` — and every loop enforces the same policy,
//! also right after a reload.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use segward::app::Sidecar;
use segward::reload::Change;

use crate::support::backend::{BODY, Backend};
use crate::support::client::{Conn, PlainClient};
use crate::support::eventually;
use crate::support::metrics::{count, scrape};
use crate::support::pki::Pki;
use crate::support::sidecar::{inbound_block, outbound_block, start, write_config, write_policy};

const TD: &str = "example.org";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const API: &str = "spiffe://example.org/ns/prod/sa/api";
const LOOPS: usize = 3;
const WAIT: Duration = Duration::from_secs(10);

const POLICY: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
rules:
  - { name: web-calls-api, from: [web], to: [api], paths: ["/v1/**"] }
"#;

/// The same fleet with the allow rule gone: everything is default-deny.
const POLICY_REVOKED: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
rules: []
"#;

#[tokio::test]
async fn connections_spread_one_per_loop_on_both_sidecars_and_every_loop_enforces() {
    let chain = Chain::start().await;
    let mut conns = Vec::new();
    for _ in 0..LOOPS {
        conns.push(PlainClient::connect(chain.outbound()).await.unwrap());
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let allowed = conn.get(&format!("http://api/v1/{i}")).await.unwrap();
        assert_eq!(allowed.status, StatusCode::OK, "{allowed:?}");
        assert_eq!(allowed.text(), BODY);
        let denied = conn.get(&format!("http://api/admin/{i}")).await.unwrap();
        assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied:?}");
    }
    let mut seen: Vec<_> = chain
        .backend
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        ["/v1/0", "/v1/1", "/v1/2"],
        "a denied request got through"
    );

    // Each app connection sits on its own outbound loop; each outbound loop has its own
    // connection to api, and api's listener spread those over its loops too.
    let web = scrape(chain.web.admin_addr()).await;
    let api = scrape(chain.api.admin_addr()).await;
    for i in 0..LOOPS {
        assert_eq!(count(&web, &series("outbound", i)), 1.0, "{web:?}");
        assert_eq!(count(&api, &series("inbound", i)), 1.0, "{api:?}");
    }
    assert_eq!(
        count(&api, "segward_connections_active{direction=\"inbound\"}"),
        LOOPS as f64
    );

    // Closed connections leave their loop's count.
    drop(conns);
    let admin = chain.web.admin_addr();
    let emptied = eventually(WAIT, || async move {
        let web = scrape(admin).await;
        (0..LOOPS).all(|i| count(&web, &series("outbound", i)) == 0.0)
    })
    .await;
    assert!(emptied, "loop counts did not return to 0");
}

#[tokio::test]
async fn a_reload_reaches_connections_on_every_loop() {
    let chain = Chain::start().await;
    let mut conns: Vec<Conn> = Vec::new();
    for _ in 0..LOOPS {
        let mut conn = PlainClient::connect(chain.outbound()).await.unwrap();
        let reply = conn.get("http://api/v1/before").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        conns.push(conn);
    }
    std::fs::write(chain.policy.join("policy.yaml"), POLICY_REVOKED).unwrap();
    for sidecar in [&chain.web, &chain.api] {
        // Applied now, or already by the file watcher (then unchanged).
        let report = sidecar.reload(true).await;
        assert!(!matches!(report.policy, Change::Rejected(_)), "{report:?}");
    }
    for conn in &mut conns {
        let reply = conn.get("http://api/v1/after").await.unwrap();
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    }
    let after = chain
        .backend
        .requests()
        .into_iter()
        .filter(|r| r.target == "/v1/after")
        .count();
    assert_eq!(after, 0, "a loop forwarded under the revoked policy");
}

fn series(direction: &str, index: usize) -> String {
    format!("segward_loop_connections_active{{direction=\"{direction}\",loop=\"{index}\"}}")
}

/// web (outbound) → api (inbound) → backend, each sidecar with [`LOOPS`] event loops.
struct Chain {
    backend: Backend,
    web: Sidecar,
    api: Sidecar,
    policy: std::path::PathBuf,
    _pki: Pki,
}

impl Chain {
    async fn start() -> Chain {
        let pki = Pki::new(&[TD]);
        let backend = Backend::start().await;
        let policy = write_policy(&pki, POLICY);
        let loops = |config: &mut segward::config::Config| {
            config.limits.worker_threads = LOOPS;
        };
        let inbound = inbound_block(backend.addr());
        let config = write_config(&pki, &pki.issue(API), &[TD], &policy, &inbound);
        let api = start(&config, loops).await;
        assert_eq!(api.event_loops(), LOOPS);
        let api_addr = api.inbound_addr().unwrap();
        let outbound = outbound_block(&[("api", api_addr, API)]);
        let config = write_config(&pki, &pki.issue(WEB), &[TD], &policy, &outbound);
        let web = start(&config, loops).await;
        Chain {
            backend,
            web,
            api,
            policy,
            _pki: pki,
        }
    }

    fn outbound(&self) -> SocketAddr {
        self.web.outbound_addr().unwrap()
    }
}
