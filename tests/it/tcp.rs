//! L4 (TCP) mode through real sidecars (docs/l4.md, issue 16): an app connects in plain
//! TCP to its outbound sidecar's `local:` port, which dials the database sidecar over mTLS;
//! that sidecar decides the connection once (no method, no path) and only then connects to
//! the workload — an echo server that counts the connections reaching it. A denied identity
//! never reaches it; a policy publish that denies an open connection closes it within 1 s
//! while the other identities' connections carry on byte-exact; so does the instant a
//! time-boxed TCP exception expires.

use std::net::SocketAddr;
use std::time::Duration;

use segward::app::Sidecar;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::client::{Alpn, MtlsClient};
use crate::support::metrics::scrape;
use crate::support::pki::Pki;
use crate::support::sidecar::{
    ANY_PORT, start, tcp_inbound_block, tcp_outbound_block, write_config, write_policy,
};
use crate::support::tcp::{Echo, closed_within, round_trip};

const TD: &str = "example.org";
const DB: &str = "spiffe://example.org/ns/prod/sa/ledger-db";
const PAYMENTS: &str = "spiffe://example.org/ns/prod/sa/payments";
const BATCH: &str = "spiffe://example.org/ns/prod/sa/batch";
const CI: &str = "spiffe://example.org/ns/staging/sa/ci";

/// "those now denied are closed within 1 s" (docs/l4.md).
const CUT_WITHIN: Duration = Duration::from_secs(1);

const POLICY: &str = r#"
segments:
  prod: { identities: ["spiffe://example.org/ns/prod/sa/*"] }
  staging: { identities: ["spiffe://example.org/ns/staging/**"] }
  ledger-db: { identities: ["spiffe://example.org/ns/prod/sa/ledger-db"] }
rules:
  - { name: prod-uses-ledger-db, from: [prod], to: [ledger-db] }
  # Names methods: an HTTP rule, so it never allows a TCP connection (fail closed).
  - { name: staging-reads-ledger-db, from: [staging], to: [ledger-db], methods: [GET] }
"#;

/// The database sidecar (inbound TCP to an echo workload) and the payments app's sidecar
/// (outbound TCP destination `ledger-db`).
struct Fleet {
    pki: Pki,
    echo: Echo,
    db: Sidecar,
    db_policy: std::path::PathBuf,
    app: Sidecar,
}

async fn fleet() -> Fleet {
    let pki = Pki::new(&[TD]);
    let echo = Echo::start().await;
    let db_policy = write_policy(&pki, POLICY);
    let inbound = tcp_inbound_block(ANY_PORT, echo.addr());
    let db_cfg = write_config(&pki, &pki.issue(DB), &[TD], &db_policy, &inbound);
    let db = start(&db_cfg, |_| {}).await;
    let db_addr = db.inbound_addr().unwrap();
    let outbound = tcp_outbound_block(db_addr, DB, ANY_PORT);
    let app_policy = write_policy(&pki, POLICY);
    let app_cfg = write_config(&pki, &pki.issue(PAYMENTS), &[TD], &app_policy, &outbound);
    let app = start(&app_cfg, |_| {}).await;
    Fleet {
        pki,
        echo,
        db,
        db_policy,
        app,
    }
}

impl Fleet {
    /// A direct mTLS connection to the database sidecar as `id`.
    async fn direct(&self, id: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
        let svid = self.pki.issue(id);
        let client = MtlsClient::new(Some(&svid.pem), &self.pki.bundle_pems(), Alpn::None);
        client
            .stream(self.db.inbound_addr().unwrap())
            .await
            .unwrap()
    }

    /// Publishes `policy` on the database sidecar, as an edit of its folder would.
    async fn publish(&self, policy: &str) {
        std::fs::write(self.db_policy.join("policy.yaml"), policy).unwrap();
        let report = self.db.reload(true).await;
        assert!(self.db.reload_status().policy_error.is_none(), "{report:?}");
    }
}

fn local(app: &Sidecar) -> SocketAddr {
    app.tcp_local_addr("ledger-db").unwrap()
}

#[tokio::test]
async fn an_allowed_app_reaches_the_database_through_both_sidecars_and_half_close_is_carried() {
    let f = fleet().await;
    let mut app = TcpStream::connect(local(&f.app)).await.unwrap();
    round_trip(&mut app, b"SELECT 1;").await;
    round_trip(&mut app, &vec![7u8; 300_000]).await;
    // The app shuts its write side; the echo workload sees EOF, closes, and the app reads
    // EOF in turn: each half-close crossed both sidecars.
    app.shutdown().await.unwrap();
    assert!(
        closed_within(&mut app, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert_eq!(f.echo.accepted(), 1);

    let metrics = scrape(f.db.admin_addr()).await;
    let allowed = "segward_requests_total{direction=\"inbound\",decision=\"allow\",rule=\"prod-uses-ledger-db\",protocol=\"tcp\"}";
    assert_eq!(metrics.get(allowed), Some(&1.0), "{metrics:#?}");
}

#[tokio::test]
async fn a_denied_identity_is_closed_before_any_byte_reaches_the_workload() {
    let f = fleet().await;
    // The staging CI identity: its only rule names methods, so no TCP rule allows it.
    let mut ci = f.direct(CI).await;
    let _ = ci.write_all(b"DROP TABLE ledger;").await;
    assert!(
        closed_within(&mut ci, Duration::from_secs(5))
            .await
            .is_some()
    );
    // A client without a certificate fails the handshake.
    let anonymous = MtlsClient::new(None, &f.pki.bundle_pems(), Alpn::None);
    let mut stream = anonymous.stream(f.db.inbound_addr().unwrap()).await.ok();
    if let Some(stream) = stream.as_mut() {
        // TLS 1.3: the server's refusal arrives after the client finished.
        assert!(
            closed_within(stream, Duration::from_secs(5))
                .await
                .is_some()
        );
    }
    assert_eq!(f.echo.accepted(), 0, "nothing reached the workload");
    let metrics = scrape(f.db.admin_addr()).await;
    let denied = "segward_requests_total{direction=\"inbound\",decision=\"deny\",rule=\"default-deny\",protocol=\"tcp\"}";
    assert_eq!(metrics.get(denied), Some(&1.0), "{metrics:#?}");
}

#[tokio::test]
async fn revoking_an_identity_closes_its_open_connection_within_1s_and_spares_the_others() {
    let f = fleet().await;
    let mut payments = f.direct(PAYMENTS).await;
    let mut batch = f.direct(BATCH).await;
    let mut via_app = TcpStream::connect(local(&f.app)).await.unwrap();
    round_trip(&mut payments, b"BEGIN;").await;
    round_trip(&mut batch, b"BEGIN;").await;
    round_trip(&mut via_app, b"BEGIN;").await;

    let published = Instant::now();
    f.publish(&format!("{POLICY}revoked: [\"{PAYMENTS}\"]\n"))
        .await;
    assert!(
        closed_within(&mut payments, CUT_WITHIN).await.is_some(),
        "the revoked identity's connection is closed within 1 s"
    );
    // The app sidecar holds the payments SVID too: its tunnel to the database is cut.
    assert!(closed_within(&mut via_app, CUT_WITHIN).await.is_some());
    let cut_after = published.elapsed();
    assert!(cut_after < CUT_WITHIN, "{cut_after:?}");
    // The batch identity's connection carries on, byte-exact, and new ones open.
    round_trip(&mut batch, &vec![42u8; 100_000]).await;
    let mut again = f.direct(BATCH).await;
    round_trip(&mut again, b"COMMIT;").await;
    // A new connection as payments is refused.
    let mut payments = f.direct(PAYMENTS).await;
    let _ = payments.write_all(b"x").await;
    assert!(
        closed_within(&mut payments, Duration::from_secs(5))
            .await
            .is_some()
    );

    let metrics = scrape(f.db.admin_addr()).await;
    let cut = "segward_connections_cut_total{direction=\"inbound\",reason=\"policy-revoked\"}";
    assert_eq!(metrics.get(cut), Some(&2.0), "{metrics:#?}");
}

#[tokio::test]
async fn a_time_boxed_tcp_exception_closes_its_open_connection_when_it_expires() {
    // docs/runbook.md–11: expiry is a policy change like any other; the tunnel opened under
    // the exception is decided again at its instant, with no file change and no reload.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = now + 3;
    let policy = format!(
        "{POLICY}  - {{ name: ci-migration-window, from: [staging], to: [ledger-db], expires: \"{}\", owner: ana, ticket: DB-12 }}\n",
        segward::policy::format_time(at as i64)
    );
    let pki = Pki::new(&[TD]);
    let echo = Echo::start().await;
    let folder = write_policy(&pki, &policy);
    let inbound = tcp_inbound_block(ANY_PORT, echo.addr());
    let cfg = write_config(&pki, &pki.issue(DB), &[TD], &folder, &inbound);
    let db = start(&cfg, |_| {}).await;
    let svid = pki.issue(CI);
    let client = MtlsClient::new(Some(&svid.pem), &pki.bundle_pems(), Alpn::None);
    let mut ci = client.stream(db.inbound_addr().unwrap()).await.unwrap();
    round_trip(&mut ci, b"ALTER TABLE ledger ADD COLUMN memo text;").await;

    // Open until the instant (bytes still flow a second before it) …
    let expires = std::time::UNIX_EPOCH + Duration::from_secs(at);
    if let Ok(left) = expires.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left.saturating_sub(Duration::from_secs(1))).await;
        round_trip(&mut ci, b"SELECT 1;").await;
    }
    // … then closed within 1 s of it.
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        closed_within(&mut ci, left + CUT_WITHIN).await.is_some(),
        "closed within 1 s of `expires`"
    );
    let late = std::time::SystemTime::now()
        .duration_since(expires)
        .unwrap_or_default();
    assert!(late < CUT_WITHIN, "closed {late:?} after the instant");
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn audit_mode_keeps_a_now_denied_connection_open_and_counts_it_would_deny() {
    // `mode: audit` enforces nothing (docs/configuration.md): a publish that would deny an open
    // connection closes nothing, but is recorded as the would-deny it would have been.
    let pki = Pki::new(&[TD]);
    let echo = Echo::start().await;
    let folder = write_policy(&pki, POLICY);
    let inbound = format!("mode: audit\n{}", tcp_inbound_block(ANY_PORT, echo.addr()));
    let cfg = write_config(&pki, &pki.issue(DB), &[TD], &folder, &inbound);
    let db = start(&cfg, |_| {}).await;
    let svid = pki.issue(PAYMENTS);
    let client = MtlsClient::new(Some(&svid.pem), &pki.bundle_pems(), Alpn::None);
    let mut payments = client.stream(db.inbound_addr().unwrap()).await.unwrap();
    round_trip(&mut payments, b"BEGIN;").await;

    std::fs::write(
        folder.join("policy.yaml"),
        format!("{POLICY}revoked: [\"{PAYMENTS}\"]\n"),
    )
    .unwrap();
    db.reload(true).await;
    assert!(
        closed_within(&mut payments, CUT_WITHIN).await.is_none(),
        "audit mode closes nothing"
    );
    round_trip(&mut payments, b"COMMIT;").await;
    let metrics = scrape(db.admin_addr()).await;
    let would = "segward_requests_total{direction=\"inbound\",decision=\"would-deny\",rule=\"revoked\",protocol=\"tcp\"}";
    assert_eq!(metrics.get(would), Some(&1.0), "{metrics:#?}");
    let cut = "segward_connections_cut_total{direction=\"inbound\",reason=\"policy-revoked\"}";
    assert_eq!(metrics.get(cut), None, "{metrics:#?}");
}
