//! L4 mode in front of a real PostgreSQL (docs/l4.md, issue 16): "production database
//! access is isolated from staging". The ledger database runs behind an inbound TCP sidecar;
//! each app speaks the PostgreSQL protocol (`tokio-postgres`) to its own outbound sidecar's
//! `local:` port. Prod reads and writes; staging's connection is refused before the server
//! ever sees it (its connection log says so); revoking prod mid-session ends its session
//! within 1 s while another prod identity's session carries on in the same backend.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use segward::app::Sidecar;
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::support::eventually;
use crate::support::metrics::scrape;
use crate::support::pki::Pki;
use crate::support::postgres::{Postgres, connect};
use crate::support::sidecar::{
    ANY_PORT, start, tcp_inbound_block, tcp_outbound_block, write_config, write_policy,
};

const TD: &str = "example.org";
const LEDGER_DB: &str = "spiffe://example.org/ns/prod/sa/ledger-db";
const PAYMENTS: &str = "spiffe://example.org/ns/prod/sa/payments";
const BATCH: &str = "spiffe://example.org/ns/prod/sa/batch";
const CI_RUNNER: &str = "spiffe://example.org/ns/staging/sa/ci-runner";

/// "those now denied are closed within 1 s" (docs/l4.md).
const CUT_WITHIN: Duration = Duration::from_secs(1);

/// The policy in force at the database and at the prod apps: prod reaches the ledger
/// database; staging has no rule to it, so the default deny refuses it.
const POLICY: &str = r#"
segments:
  prod: { identities: ["spiffe://example.org/ns/prod/sa/*"] }
  staging: { identities: ["spiffe://example.org/ns/staging/**"] }
  ledger-db: { identities: ["spiffe://example.org/ns/prod/sa/ledger-db"] }
rules:
  - { name: prod-uses-ledger-db, from: [prod], to: [ledger-db] }
"#;

/// What a careless (or hostile) staging environment runs at its own sidecar: it lets itself
/// out to the ledger database, so only the database's sidecar stands in the way.
const STAGING_POLICY: &str = r#"
segments:
  staging: { identities: ["spiffe://example.org/ns/staging/**"] }
  ledger-db: { identities: ["spiffe://example.org/ns/prod/sa/ledger-db"] }
rules:
  - { name: staging-reaches-ledger-db, from: [staging], to: [ledger-db] }
"#;

/// The server, its sidecar, and one outbound sidecar per app identity.
struct Fleet {
    // Dropped first: the sidecars, then the server.
    payments: Sidecar,
    batch: Sidecar,
    ci_runner: Sidecar,
    db: Sidecar,
    db_policy: PathBuf,
    pg: Postgres,
    _pki: Pki,
}

/// Whether Debian's PostgreSQL server is here for `test` (else it skips or, in CI, fails).
fn postgres_or_skip(test: &str) -> bool {
    let here = crate::support::postgres::installed();
    crate::support::component::present_or_skip(
        test,
        "PostgreSQL (Debian package `postgresql`)",
        here,
    )
}

async fn fleet() -> Fleet {
    let pki = Pki::new(&[TD]);
    let pg = Postgres::start().await;
    let db_policy = write_policy(&pki, POLICY);
    let inbound = tcp_inbound_block(ANY_PORT, pg.addr());
    let db_cfg = write_config(&pki, &pki.issue(LEDGER_DB), &[TD], &db_policy, &inbound);
    let db = start(&db_cfg, |_| {}).await;
    let db_addr = db.inbound_addr().unwrap();
    Fleet {
        payments: app(&pki, PAYMENTS, POLICY, db_addr).await,
        batch: app(&pki, BATCH, POLICY, db_addr).await,
        ci_runner: app(&pki, CI_RUNNER, STAGING_POLICY, db_addr).await,
        db,
        db_policy,
        pg,
        _pki: pki,
    }
}

/// An app's sidecar as `id` under `policy`, with the TCP destination `ledger-db`.
async fn app(pki: &Pki, id: &str, policy: &str, db_addr: SocketAddr) -> Sidecar {
    let outbound = tcp_outbound_block(db_addr, LEDGER_DB, ANY_PORT);
    let policy = write_policy(pki, policy);
    let cfg = write_config(pki, &pki.issue(id), &[TD], &policy, &outbound);
    start(&cfg, |_| {}).await
}

impl Fleet {
    /// A PostgreSQL session through `app`'s sidecar, named `application` at the server.
    async fn session(
        &self,
        app: &Sidecar,
        application: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        connect(app.tcp_local_addr("ledger-db").unwrap(), application).await
    }

    /// Publishes `policy` on the database's sidecar, as an edit of its folder would.
    async fn publish(&self, policy: &str) {
        std::fs::write(self.db_policy.join("policy.yaml"), policy).unwrap();
        let report = self.db.reload(true).await;
        assert!(self.db.reload_status().policy_error.is_none(), "{report:?}");
    }
}

/// The session's backend process at the server.
async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The application names of the client sessions the server has open, `observer`'s own aside.
async fn sessions(observer: &Client) -> BTreeSet<String> {
    let rows = observer
        .query(
            "SELECT application_name FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// Whether the server still has a backend with PID `pid`.
async fn backend_alive(observer: &Client, pid: i32) -> bool {
    let row = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) == 1
}

#[tokio::test]
async fn prod_reads_and_writes_the_ledger_and_staging_never_reaches_the_server() {
    if !postgres_or_skip(
        "postgres::prod_reads_and_writes_the_ledger_and_staging_never_reaches_the_server",
    ) {
        return;
    }
    let f = fleet().await;
    let payments = f.session(&f.payments, "payments").await.unwrap();
    let sum: i32 = payments
        .query_one("SELECT 40 + 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 42);
    payments
        .batch_execute(
            "CREATE TABLE ledger (id serial PRIMARY KEY, account text NOT NULL, cents bigint NOT NULL)",
        )
        .await
        .unwrap();
    let id: i32 = payments
        .query_one(
            "INSERT INTO ledger (account, cents) VALUES ($1, $2) RETURNING id",
            &[&"acct-7", &1250_i64],
        )
        .await
        .unwrap()
        .get(0);
    let row = payments
        .query_one("SELECT account, cents FROM ledger WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("acct-7".into(), 1250)
    );
    // The row is in the server itself, not in anything between.
    let superuser = f.pg.superuser().await;
    let rows: i64 = superuser
        .query_one("SELECT count(*) FROM ledger WHERE account = 'acct-7'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);

    // Staging's own sidecar lets it out; the database's sidecar refuses it.
    let received = f.pg.connections_received();
    let refused = f.session(&f.ci_runner, "ci-runner").await;
    assert!(refused.is_err(), "staging opened a PostgreSQL session");
    // A prod session opened after the refusal is the only new connection the server
    // received: its log has one "connection received" more, not two.
    let control = f.session(&f.payments, "payments-again").await.unwrap();
    assert_eq!(
        f.pg.connections_received(),
        received + 1,
        "the server received staging's connection; its log:\n{}",
        f.pg.log()
    );
    // And the sessions it has open are the prod ones (the fixture's readiness probe may
    // take a moment to end its own).
    let expected = BTreeSet::from(["payments".to_owned(), "payments-again".to_owned()]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            sessions(&superuser).await == expected
        })
        .await,
        "open sessions: {:?}",
        sessions(&superuser).await
    );
    drop(control);

    // The refusal was the database sidecar's, by the default deny.
    let metrics = scrape(f.db.admin_addr()).await;
    let denied = "segward_requests_total{direction=\"inbound\",decision=\"deny\",rule=\"default-deny\",protocol=\"tcp\"}";
    assert_eq!(metrics.get(denied), Some(&1.0), "{metrics:#?}");
}

#[tokio::test]
async fn revoking_prod_mid_session_ends_its_session_within_1s_and_the_other_carries_on() {
    if !postgres_or_skip(
        "postgres::revoking_prod_mid_session_ends_its_session_within_1s_and_the_other_carries_on",
    ) {
        return;
    }
    let f = fleet().await;
    let superuser = f.pg.superuser().await;
    let payments = f.session(&f.payments, "payments").await.unwrap();
    let batch = f.session(&f.batch, "batch").await.unwrap();
    payments
        .batch_execute("CREATE TABLE runs (n int NOT NULL); INSERT INTO runs VALUES (1)")
        .await
        .unwrap();
    let payments_pid = backend_pid(&payments).await;
    let batch_pid = backend_pid(&batch).await;
    // Mid-session: the batch identity holds an open transaction across the publish.
    batch
        .batch_execute("BEGIN; INSERT INTO runs VALUES (2)")
        .await
        .unwrap();

    let published = Instant::now();
    f.publish(&format!("{POLICY}revoked: [\"{PAYMENTS}\"]\n"))
        .await;
    let cut = eventually(CUT_WITHIN, || async { payments.is_closed() }).await;
    let cut_after = published.elapsed();
    assert!(
        cut,
        "the revoked session is still open {cut_after:?} after the publish"
    );
    assert!(cut_after < CUT_WITHIN, "{cut_after:?}");
    eprintln!("revoked PostgreSQL session closed {cut_after:?} after the publish");
    assert!(payments.simple_query("SELECT 1").await.is_err());
    // The server ended that session's backend: nothing is left of it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            !backend_alive(&superuser, payments_pid).await
        })
        .await,
        "the server still has the revoked session's backend {payments_pid}"
    );

    // The batch session carries on, in the same backend, its transaction intact.
    assert_eq!(backend_pid(&batch).await, batch_pid);
    batch
        .batch_execute("INSERT INTO runs VALUES (3); COMMIT")
        .await
        .unwrap();
    let runs: Vec<i32> = batch
        .query("SELECT n FROM runs ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(runs, [1, 2, 3]);
    assert!(!batch.is_closed());
    assert!(backend_alive(&superuser, batch_pid).await);

    // A new payments session is refused now.
    assert!(f.session(&f.payments, "payments").await.is_err());
}
