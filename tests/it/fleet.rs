//! The shipped example policy (`policies/`) enforced by real sidecars started from config
//! files (ISSUE 4 "Done when"): the blast-radius story on loopback. Egress rules are enforced
//! by the caller's outbound sidecar, ingress rules by the callee's inbound sidecar — and a
//! stolen certificate used directly against the inbound side meets the same policy.

use std::path::PathBuf;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;

use crate::support::backend::Backend;
use crate::support::client::{Alpn, MtlsClient, PlainClient, Reply, request};
use crate::support::pki::Pki;
use crate::support::sidecar::{inbound_block, outbound_block, start, write_config};
use segward::app::Sidecar;

const FRONTEND: &str = "spiffe://example.org/ns/prod/sa/frontend";
const PAYMENTS: &str = "spiffe://example.org/ns/prod/sa/payments";
const CI_RUNNER: &str = "spiffe://example.org/ns/staging/sa/ci-runner";
const AGENT_READ: &str = "spiffe://example.org/ns/prod/agent/copilot/read";
const AGENT_WRITE: &str = "spiffe://example.org/ns/prod/agent/copilot/write";

fn fleet_policy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// payments' workload behind its inbound sidecar; callers get an outbound sidecar each.
struct Fleet {
    pki: Pki,
    backend: Backend,
    payments: Sidecar,
}

impl Fleet {
    async fn start() -> Fleet {
        let pki = Pki::new(&["example.org"]);
        let backend = Backend::start().await;
        let config = write_config(
            &pki,
            &pki.issue(PAYMENTS),
            &["example.org"],
            &fleet_policy(),
            &inbound_block(backend.addr()),
        );
        let payments = start(&config, |_| {}).await;
        Fleet {
            pki,
            backend,
            payments,
        }
    }

    /// An outbound sidecar for `id`, routing `payments` to payments' inbound sidecar.
    async fn caller(&self, id: &str) -> Sidecar {
        let payments = self.payments.inbound_addr().unwrap();
        let config = write_config(
            &self.pki,
            &self.pki.issue(id),
            &["example.org"],
            &fleet_policy(),
            &outbound_block(&[("payments", payments, PAYMENTS)]),
        );
        start(&config, |_| {}).await
    }

    /// `id`'s certificate used directly against payments' inbound side.
    async fn direct(&self, id: &str, method: &str, path: &str) -> Reply {
        let svid = self.pki.issue(id);
        let client = MtlsClient::new(Some(&svid.pem), &self.pki.bundle_pems(), Alpn::H1);
        let mut conn = client
            .connect(self.payments.inbound_addr().unwrap())
            .await
            .unwrap();
        conn.send(request(method, path).body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap()
    }

    fn seen(&self) -> Vec<String> {
        self.backend
            .requests()
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}

/// `method http://payments<path>` through `caller`'s outbound sidecar, as an http_proxy client.
async fn via(caller: &Sidecar, method: &str, path: &str) -> Reply {
    let mut conn = PlainClient::connect(caller.outbound_addr().unwrap())
        .await
        .unwrap();
    let target = format!("http://payments{path}");
    conn.send(
        request(method, &target)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn frontend_creates_charges_but_never_reaches_the_admin_api() {
    let fleet = Fleet::start().await;
    let frontend = fleet.caller(FRONTEND).await;

    let charge = via(&frontend, "POST", "/v1/charges").await;
    let admin = via(&frontend, "GET", "/admin/keys").await;

    assert_eq!(charge.status, StatusCode::OK);
    assert_eq!(admin.status, StatusCode::FORBIDDEN);
    assert_eq!(fleet.seen(), ["POST /v1/charges"]);
    assert_eq!(fleet.backend.requests()[0].headers["x-spiffe-id"], FRONTEND);
}

#[tokio::test]
async fn a_staging_ci_runner_never_reaches_prod_through_its_sidecar_or_directly() {
    let fleet = Fleet::start().await;
    let ci = fleet.caller(CI_RUNNER).await;

    // Egress: refused by its own outbound sidecar (staging-never-reaches-prod).
    assert_eq!(
        via(&ci, "GET", "/v1/charges").await.status,
        StatusCode::FORBIDDEN
    );
    // A stolen runner certificate used directly: refused by payments' inbound sidecar.
    assert_eq!(
        fleet.direct(CI_RUNNER, "GET", "/v1/charges").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(fleet.seen().is_empty(), "{:?}", fleet.seen());
}

#[tokio::test]
async fn an_agents_read_identity_reads_but_only_its_write_identity_issues_refunds() {
    let fleet = Fleet::start().await;

    let read = fleet.direct(AGENT_READ, "GET", "/v1/charges/ch_1").await;
    let refused = fleet.direct(AGENT_READ, "POST", "/v1/refunds").await;
    let refund = fleet.direct(AGENT_WRITE, "POST", "/v1/refunds").await;

    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refund.status, StatusCode::OK);
    assert_eq!(fleet.seen(), ["GET /v1/charges/ch_1", "POST /v1/refunds"]);
}
