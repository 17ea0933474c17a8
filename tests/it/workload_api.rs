//! Identity from the SPIFFE Workload API (docs/spire.md, ISSUE 17): a sidecar configured with
//! `identity: { workload_api: unix:///… }` against the stand-in agent of `support::spire` —
//! the real gRPC protocol from the official proto on a real Unix socket, rcgen-minted SVIDs.
//! What the sidecar presents is read off real mTLS handshakes (the leaf's serial); what it
//! trusts, from whether a real client of another trust domain gets through.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use segward::app::Sidecar;
use segward::config::{Backoff, Config, IdentitySource};
use segward::reload::{Part, ReloadError};
use segward::workload_api::{self, pb};
use tokio::task::JoinHandle;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::backend::{Backend, Recorded};
use crate::support::client::{Alpn, ClientError, Conn, MtlsClient, PlainClient};
use crate::support::eventually;
use crate::support::metrics::scrape;
use crate::support::pki::{Pki, serial};
use crate::support::process::{Segward, WAIT};
use crate::support::sidecar::{
    inbound_block, outbound_block, start as start_sidecar, write_config, write_policy,
};
use crate::support::spire::{Agent, response};
use crate::support::tcp::{Echo, closed_within, round_trip};

const API: &str = "spiffe://example.org/ns/prod/sa/api";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const PARTNER: &str = "spiffe://partner.net/integrations/crm";

const POLICY: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
  partner: { identities: ["spiffe://partner.net/**"] }
rules:
  - name: web-calls-api
    from: [web]
    to: [api]
  - name: partner-calls-api
    from: [partner]
    to: [api]
"#;

/// How long an update pushed on the stream may take to reach the next handshake.
const WITHIN: Duration = Duration::from_secs(5);

/// A port free right now, for listeners that must be known before the sidecar has started.
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// api's PKI (example.org and partner.net), its backend and its stand-in agent.
struct World {
    pki: Pki,
    agent: Agent,
    backend: Backend,
    inbound: SocketAddr,
    admin: SocketAddr,
    config: std::path::PathBuf,
    /// The L4 inbound listener and its echo workload, if any.
    tcp: Option<(SocketAddr, Echo)>,
}

impl World {
    async fn new() -> World {
        World::with(POLICY, false).await
    }

    /// A world whose sidecar loads `policy`; with `tcp`, also an L4 inbound listener in
    /// front of an echo workload.
    async fn with(policy: &str, tcp: bool) -> World {
        let pki = Pki::new(&["example.org", "partner.net"]);
        World::build(pki, policy, tcp, "").await
    }

    /// [`World::with`] on `pki`, with `extra` (an `outbound:` block) in the config.
    async fn build(pki: Pki, policy: &str, tcp: bool, extra: &str) -> World {
        let agent = Agent::start(pki.dir());
        let backend = Backend::start().await;
        let (inbound, admin) = (free_port(), free_port());
        let policy = write_policy(&pki, policy);
        let mut yaml = format!(
            "identity:\n  workload_api: {}\npolicy: {}\nadmin:\n  listen: {admin}\n{extra}",
            agent.uri(),
            policy.display(),
        );
        let tcp = match tcp {
            false => {
                let http = format!(
                    "inbound:\n  listen: {inbound}\n  upstream: {}\n",
                    backend.addr()
                );
                yaml.push_str(&http);
                None
            }
            true => {
                let (listen, echo) = (free_port(), Echo::start().await);
                let both = format!(
                    "inbound:\n  - {{ listen: {inbound}, upstream: {} }}\n  \
                     - {{ listen: {listen}, upstream: {}, protocol: tcp }}\n",
                    backend.addr(),
                    echo.addr()
                );
                yaml.push_str(&both);
                Some((listen, echo))
            }
        };
        let config = pki.dir().join("segward-workload-api.yaml");
        std::fs::write(&config, yaml).unwrap();
        World {
            pki,
            agent,
            backend,
            inbound,
            admin,
            config,
            tcp,
        }
    }

    /// The config, with reconnect delays short enough for a test.
    fn config(&self) -> Config {
        let mut config = Config::load(&self.config).unwrap();
        let IdentitySource::WorkloadApi(api) = &mut config.identity else {
            panic!("not a Workload API config");
        };
        api.backoff = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
        };
        config
    }

    /// A fresh SVID for api as the agent would send it, trusting only example.org.
    fn svid_for(&self, id: &str) -> (Vec<u8>, pb::X509svidResponse) {
        let svid = self.pki.issue(id);
        let response = response(id, &svid.pem, self.pki.ca("example.org"), &[]);
        (serial(&svid.pem.der), response)
    }

    /// Pushes an SVID for api and starts the sidecar; returns it with the SVID's serial.
    async fn started(&self) -> (Sidecar, Vec<u8>) {
        let (serial, response) = self.svid_for(API);
        self.agent.push(response);
        (start(&self.config()).await, serial)
    }

    async fn connect(&self, id: &str) -> Result<Conn, ClientError> {
        let svid = self.pki.issue(id);
        let client = MtlsClient::new(Some(&svid.pem), &self.pki.bundle_pems(), Alpn::H1);
        client.connect(self.inbound).await
    }

    /// An mTLS connection as `id` to the L4 listener.
    async fn tcp(&self, id: &str) -> TlsStream<TcpStream> {
        let svid = self.pki.issue(id);
        let client = MtlsClient::new(Some(&svid.pem), &self.pki.bundle_pems(), Alpn::None);
        let (listen, _) = self.tcp.as_ref().expect("a world with an L4 listener");
        client.stream(*listen).await.unwrap()
    }

    /// How many connections reached the L4 workload.
    fn tcp_accepted(&self) -> usize {
        self.tcp.as_ref().map_or(0, |(_, echo)| echo.accepted())
    }

    /// `/policy` as JSON.
    async fn policy(&self) -> serde_json::Value {
        let reply = PlainClient::get(self.admin, "/policy").await.unwrap();
        serde_json::from_str(&reply.text()).unwrap()
    }

    /// The serial of the SVID the sidecar presents on a new handshake.
    async fn presented(&self) -> Vec<u8> {
        serial(self.connect(WEB).await.unwrap().peer_leaf().unwrap())
    }

    async fn readyz(&self) -> (StatusCode, String) {
        let reply = PlainClient::get(self.admin, "/readyz").await.unwrap();
        (reply.status, reply.text())
    }
}

#[tokio::test]
async fn start_up_waits_for_the_first_svid_with_readyz_503_and_no_listener() {
    let world = World::new().await;
    let config = world.config();
    let starting: JoinHandle<Sidecar> =
        tokio::spawn(async move { Sidecar::start(&config).await.unwrap() });
    // The agent has issued nothing yet: admin answers, readiness says why it waits …
    let admin_up = eventually(WAIT, || async {
        PlainClient::get(world.admin, "/readyz").await.is_ok()
    })
    .await;
    assert!(admin_up, "the admin listener never came up");
    let (status, text) = world.readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("waiting for the first X509-SVID"), "{text}");
    // … and the data plane is not listening (fail closed), so no peer can get in.
    assert!(matches!(
        world.connect(WEB).await,
        Err(ClientError::Connect(_))
    ));
    assert!(!starting.is_finished());
    assert!(
        world.agent.accepted_calls() >= 1,
        "the sidecar never called the agent"
    );

    let (issued, svid) = world.svid_for(API);
    world.agent.push(svid);
    let sidecar = tokio::time::timeout(WAIT, starting).await.unwrap().unwrap();
    assert_eq!(sidecar.id().as_str(), API);
    assert_eq!(world.readyz().await.0, StatusCode::OK);
    let mut conn = world.connect(WEB).await.unwrap();
    assert_eq!(serial(conn.peer_leaf().unwrap()), issued);
    assert_eq!(conn.get("/v1/ping").await.unwrap().status, StatusCode::OK);
    assert_eq!(world.backend.requests().len(), 1);
    // Every call the sidecar made carried `workload.spiffe.io: true`.
    assert_eq!(world.agent.refused_calls(), 0);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_rotation_pushed_on_the_stream_is_presented_on_the_next_handshake_while_an_open_connection_continues()
 {
    let world = World::new().await;
    let (sidecar, first) = world.started().await;
    let mut open = world.connect(WEB).await.unwrap();
    assert_eq!(serial(open.peer_leaf().unwrap()), first);
    assert_eq!(open.get("/v1/a").await.unwrap().status, StatusCode::OK);

    let (rotated, svid) = world.svid_for(API);
    assert_ne!(rotated, first);
    world.agent.push(svid);
    let presented = eventually(WITHIN, || async { world.presented().await == rotated }).await;
    assert!(presented, "the rotated SVID never reached a new handshake");
    // The connection opened before the rotation carries on, on its handshake's SVID.
    assert_eq!(open.get("/v1/b").await.unwrap().status, StatusCode::OK);
    assert_eq!(serial(open.peer_leaf().unwrap()), first);
    assert_eq!(sidecar.reload_status().tls_error, None);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_bundle_update_on_the_stream_adds_a_federated_trust_domain() {
    let world = World::new().await;
    let (sidecar, _) = world.started().await;
    // example.org only: partner.net's CA is not trusted yet.
    let refused = world.connect(PARTNER).await;
    let refused = match refused {
        Err(error) => Some(error),
        Ok(mut conn) => conn.get("/v1/a").await.err(),
    };
    assert!(
        refused.is_some(),
        "partner.net got in before its bundle came"
    );
    assert!(world.backend.requests().is_empty());

    // The agent federates with partner.net: same SVID, one more bundle.
    let svid = world.pki.issue(API);
    let federated = [("spiffe://partner.net", world.pki.ca("partner.net"))];
    world.agent.push(response(
        API,
        &svid.pem,
        world.pki.ca("example.org"),
        &federated,
    ));
    let admitted = eventually(WITHIN, || async {
        match world.connect(PARTNER).await {
            Ok(mut conn) => conn
                .get("/v1/a")
                .await
                .is_ok_and(|reply| reply.status == StatusCode::OK),
            Err(_) => false,
        }
    })
    .await;
    assert!(admitted, "the federated bundle never applied");
    assert_eq!(world.backend.requests().len(), 1);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn the_agent_going_away_keeps_the_last_svid_and_coming_back_delivers_the_next() {
    let mut world = World::new().await;
    let (sidecar, first) = world.started().await;
    let calls = world.agent.accepted_calls();
    world.agent.stop().await;
    // Gone: the material in force stays, traffic and readiness with it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.presented().await, first);
    let mut conn = world.connect(WEB).await.unwrap();
    assert_eq!(conn.get("/v1/a").await.unwrap().status, StatusCode::OK);
    assert_eq!(world.readyz().await.0, StatusCode::OK);

    // Back, with a rotated SVID: the sidecar reconnects on its own and takes it.
    let (rotated, svid) = world.svid_for(API);
    world.agent.push(svid);
    world.agent.restart();
    let presented = eventually(WITHIN, || async { world.presented().await == rotated }).await;
    assert!(
        presented,
        "no reconnect: the SVID served after the restart never arrived"
    );
    assert!(world.agent.accepted_calls() > calls);
    sidecar.shutdown().await;
}

/// api, renamed: the ID the agent rotates the workload to.
const API_V2: &str = "spiffe://example.org/ns/prod/sa/api-v2";
/// L4 clients: batch may reach api, ops may reach api-v2 (no methods, no paths).
const BATCH: &str = "spiffe://example.org/ns/prod/sa/batch";
const OPS: &str = "spiffe://example.org/ns/prod/sa/ops";

/// Rules that tell the two own IDs apart: web reads `/v1/**` of api and `/v2/**` of api-v2;
/// batch opens connections to api, ops to api-v2.
const ROTATION: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
  api-v2: { identities: ["spiffe://example.org/ns/prod/sa/api-v2"] }
  batch: { identities: ["spiffe://example.org/ns/prod/sa/batch"] }
  ops: { identities: ["spiffe://example.org/ns/prod/sa/ops"] }
  ledger: { identities: ["spiffe://example.org/ns/prod/sa/ledger"] }
rules:
  - { name: web-reads-api-v1, from: [web], to: [api], paths: ["/v1/**"] }
  - { name: web-reads-api-v2, from: [web], to: [api-v2], paths: ["/v2/**"] }
  - { name: batch-uses-api, from: [batch], to: [api] }
  - { name: ops-uses-api-v2, from: [ops], to: [api-v2] }
"#;

/// The backend's requests for `target`.
fn received(world: &World, target: &str) -> Vec<Recorded> {
    let requests = world.backend.requests().into_iter();
    requests.filter(|r| r.target == target).collect()
}

/// `x-forwarded-client-cert` as the backend received it.
fn xfcc(recorded: &Recorded) -> &str {
    let value = recorded.headers.get("x-forwarded-client-cert").unwrap();
    value.to_str().unwrap()
}

#[tokio::test]
async fn an_svid_for_another_spiffe_id_re_slices_the_policy_for_it_and_every_later_decision_is_the_new_ids()
 {
    let world = World::with(ROTATION, true).await;
    let (sidecar, first) = world.started().await;
    assert_eq!(world.policy().await["own_id"], API);
    let mut open = world.connect(WEB).await.unwrap();
    assert_eq!(open.get("/v1/a").await.unwrap().status, StatusCode::OK);
    assert_eq!(
        open.get("/v2/a").await.unwrap().status,
        StatusCode::FORBIDDEN
    );
    assert!(received(&world, "/v2/a").is_empty());
    let mut batch = world.tcp(BATCH).await;
    round_trip(&mut batch, b"BEGIN;").await;
    let mut ops = world.tcp(OPS).await;
    assert!(
        closed_within(&mut ops, WITHIN).await.is_some(),
        "ops got in as api"
    );
    assert_eq!(world.tcp_accepted(), 1);

    // The agent now says this workload is api-v2.
    let (rotated, svid) = world.svid_for(API_V2);
    world.agent.push(svid);
    let presented = eventually(WITHIN, || async { world.presented().await == rotated }).await;
    assert!(
        presented,
        "the SVID for the new ID never reached a new handshake"
    );
    assert_eq!(sidecar.id().as_str(), API_V2);
    assert_eq!(sidecar.reload_status().tls_error, None);

    // A new connection: only api-v2's rules apply, and the workload hears it is api-v2.
    let mut fresh = world.connect(WEB).await.unwrap();
    assert_eq!(fresh.get("/v2/b").await.unwrap().status, StatusCode::OK);
    assert_eq!(
        fresh.get("/v1/b").await.unwrap().status,
        StatusCode::FORBIDDEN
    );
    assert!(
        received(&world, "/v1/b").is_empty(),
        "api's rule let /v1/b through"
    );
    assert_eq!(
        xfcc(&received(&world, "/v2/b")[0]),
        format!("By={API_V2};URI={WEB}")
    );
    // The connection opened as api (on api's SVID) is decided as api-v2 from now on.
    assert_eq!(serial(open.peer_leaf().unwrap()), first);
    assert_eq!(open.get("/v2/c").await.unwrap().status, StatusCode::OK);
    assert_eq!(
        open.get("/v1/c").await.unwrap().status,
        StatusCode::FORBIDDEN
    );
    assert!(received(&world, "/v1/c").is_empty());
    assert_eq!(
        xfcc(&received(&world, "/v2/c")[0]),
        format!("By={API_V2};URI={WEB}")
    );

    // L4: batch's connection, let through for api, was decided again as api-v2 and closed;
    // ops now gets in.
    assert!(
        closed_within(&mut batch, WITHIN).await.is_some(),
        "batch still connected"
    );
    let mut ops = world.tcp(OPS).await;
    round_trip(&mut ops, b"BEGIN;").await;
    let mut batch = world.tcp(BATCH).await;
    assert!(
        closed_within(&mut batch, WITHIN).await.is_some(),
        "batch got in as api-v2"
    );
    assert_eq!(
        world.tcp_accepted(),
        2,
        "batch reached the workload after the rotation"
    );

    // /policy: the new ID and its slice.
    let policy = world.policy().await;
    assert_eq!(policy["own_id"], API_V2);
    assert_eq!(
        (policy["rules"].as_u64(), policy["fleet_rules"].as_u64()),
        (Some(2), Some(4))
    );
    sidecar.shutdown().await;
}

/// Outbound: api reads ledger's `/v1/**`, api-v2 its `/v2/**` (ledger's sidecar decides too).
const LEDGER: &str = "spiffe://example.org/ns/prod/sa/ledger";
const LEDGER_RULES: &str = r#"  - { name: api-reads-ledger-v1, from: [api], to: [ledger], paths: ["/v1/**"] }
  - { name: api-v2-reads-ledger-v2, from: [api-v2], to: [ledger], paths: ["/v2/**"] }
"#;

#[tokio::test]
async fn after_a_rotation_to_another_id_outbound_requests_leave_as_the_new_id_on_fresh_connections()
{
    let policy = format!("{ROTATION}{LEDGER_RULES}");
    let pki = Pki::new(&["example.org"]);
    // ledger: a file-identity sidecar with the same fleet policy, in front of its backend.
    let ledger_backend = Backend::start().await;
    let ledger_policy = write_policy(&pki, &policy);
    let ledger_svid = pki.issue(LEDGER);
    let inbound = inbound_block(ledger_backend.addr());
    let config = write_config(
        &pki,
        &ledger_svid,
        &["example.org"],
        &ledger_policy,
        &inbound,
    );
    let ledger = start_sidecar(&config, |_| {}).await;
    let ledger_addr = ledger.inbound_addr().unwrap();
    let outbound = outbound_block(&[("ledger", ledger_addr, LEDGER)]);
    let world = World::build(pki, &policy, false, &outbound).await;
    let (sidecar, _) = world.started().await;
    let out = sidecar.outbound_addr().unwrap();
    let ledger_received = |target: &str| -> Vec<Recorded> {
        let requests = ledger_backend.requests().into_iter();
        requests.filter(|r| r.target == target).collect()
    };
    // As api: /v1 leaves (and pools a connection presenting api's SVID), /v2 does not.
    let get = |target: &'static str| async move {
        PlainClient::get(out, &format!("http://ledger{target}"))
            .await
            .unwrap()
            .status
    };
    assert_eq!(get("/v1/a").await, StatusCode::OK);
    assert_eq!(get("/v2/a").await, StatusCode::FORBIDDEN);
    assert!(ledger_received("/v2/a").is_empty());

    let (rotated, svid) = world.svid_for(API_V2);
    world.agent.push(svid);
    let presented = eventually(WITHIN, || async { world.presented().await == rotated }).await;
    assert!(
        presented,
        "the SVID for the new ID never reached a new handshake"
    );
    // As api-v2: our egress decision and ledger's ingress decision both see api-v2 — the
    // pooled connection presenting api's SVID was dropped, or ledger would refuse /v2.
    assert_eq!(get("/v2/b").await, StatusCode::OK);
    let xfcc = xfcc(&ledger_received("/v2/b")[0]).to_owned();
    assert_eq!(xfcc, format!("By={LEDGER};URI={API_V2}"));
    assert_eq!(get("/v1/b").await, StatusCode::FORBIDDEN);
    assert!(
        ledger_received("/v1/b").is_empty(),
        "api's rule let /v1/b leave"
    );
    let metrics = scrape(world.admin).await;
    let evicted = "segward_upstream_pools_evicted_total{reason=\"identity-changed\"}";
    assert_eq!(metrics.get(evicted), Some(&1.0), "{metrics:#?}");
    sidecar.shutdown().await;
    ledger.shutdown().await;
}

#[tokio::test]
async fn an_svid_for_another_id_whose_slice_does_not_build_is_refused_and_the_old_state_stays() {
    // A `tests:` entry only api-v2's slice sees, and fails: api's slice builds, api-v2's not.
    let broken = format!(
        "{ROTATION}tests:\n  - {{ from: \"{WEB}\", to: \"{API_V2}\", method: GET, path: /v1/a, \
         expect: allow }}\n"
    );
    let world = World::with(&broken, false).await;
    let (sidecar, first) = world.started().await;
    let (_, other) = world.svid_for(API_V2);
    world.agent.push(other);
    let refused = eventually(WITHIN, || async {
        sidecar.reload_status().tls_error.is_some()
    })
    .await;
    assert!(
        refused,
        "the SVID for a new ID without a valid slice was not refused"
    );
    let status = sidecar.reload_status();
    let Some(ReloadError::NewIdentityPolicy { found, own, cause }) = status.error(Part::Tls) else {
        panic!("{:?}", status.tls_error);
    };
    assert_eq!((found.as_str(), own.as_str()), (API_V2, API));
    assert!(matches!(**cause, ReloadError::InvalidPolicy(_)), "{cause}");
    // Everything stays api's: SVID, ID, slice and decisions.
    assert_eq!(world.presented().await, first);
    assert_eq!(sidecar.id().as_str(), API);
    assert_eq!(world.policy().await["own_id"], API);
    let mut conn = world.connect(WEB).await.unwrap();
    assert_eq!(conn.get("/v1/a").await.unwrap().status, StatusCode::OK);
    assert_eq!(
        conn.get("/v2/a").await.unwrap().status,
        StatusCode::FORBIDDEN
    );
    assert!(received(&world, "/v2/a").is_empty());
    let (text, reason) = (status.tls_error.unwrap().to_string(), "new-identity-policy");
    assert!(text.contains(API_V2), "{text}");
    let metrics = scrape(world.admin).await;
    let rejected = format!("segward_reload_rejections_total{{what=\"tls\",reason=\"{reason}\"}}");
    assert_eq!(metrics.get(&rejected), Some(&1.0), "{metrics:#?}");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn an_svid_whose_spiffe_id_is_not_its_certificates_is_refused_and_the_old_one_stays() {
    let world = World::new().await;
    let (sidecar, first) = world.started().await;
    // A well-formed response whose spiffe_id is not its certificate's is refused.
    let svid = world.pki.issue(API);
    let mut lying = response(API, &svid.pem, world.pki.ca("example.org"), &[]);
    lying.svids[0].spiffe_id = WEB.to_owned();
    world.agent.push(lying);
    let refused = eventually(WITHIN, || async {
        matches!(
            sidecar.reload_status().tls_error,
            Some(ReloadError::InvalidTls(_))
        )
    })
    .await;
    assert!(refused, "{:?}", sidecar.reload_status().tls_error);
    assert_eq!(world.presented().await, first);
    assert_eq!(sidecar.id().as_str(), API);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn the_agent_refuses_calls_without_the_security_header_and_the_sidecar_sends_it() {
    let world = World::new().await;
    let (sidecar, _) = world.started().await;
    assert!(world.agent.accepted_calls() >= 1);
    assert_eq!(world.agent.refused_calls(), 0);
    // The same client code, without the metadata: refused, as SPIRE refuses it.
    let endpoint = segward::config::WorkloadEndpoint::parse(&world.agent.uri()).unwrap();
    let mut connection = workload_api::connect(&endpoint).await.unwrap();
    let bare = tonic::Request::new(pb::X509svidRequest {});
    let status = connection.client().fetch_x509svid(bare).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(world.agent.refused_calls(), 1);
    // With it, served.
    let served = connection
        .client()
        .fetch_x509svid(workload_api::fetch_request())
        .await;
    assert!(served.is_ok());
    sidecar.shutdown().await;
}

#[tokio::test]
async fn readyz_turns_503_once_the_last_svid_expires_without_a_successor() {
    let mut world = World::new().await;
    let id = segward::identity::SpiffeId::parse(API).unwrap();
    let short = world
        .pki
        .ca("example.org")
        .issue(&id, Duration::from_secs(3), &["localhost".to_owned()])
        .unwrap();
    world
        .agent
        .push(response(API, &short, world.pki.ca("example.org"), &[]));
    let sidecar = start(&world.config()).await;
    assert_eq!(world.readyz().await.0, StatusCode::OK);
    world.agent.stop().await;
    let expired = eventually(Duration::from_secs(10), || async {
        world.readyz().await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(expired, "readyz still 200 after the SVID expired");
    assert!(world.readyz().await.1.contains("expired"));
    sidecar.shutdown().await;
}

/// Starts a sidecar; it must be up within [`WAIT`] (a start-up that waits for an SVID it
/// never accepts fails the test instead of hanging it).
async fn start(config: &Config) -> Sidecar {
    let started = tokio::time::timeout(WAIT, Sidecar::start(config)).await;
    started.expect("no SVID accepted within WAIT").unwrap()
}

/// The binary, identity from `SPIFFE_ENDPOINT_SOCKET` (no `identity:` section at all): it
/// waits for the agent, serves once the SVID comes, and a SIGTERM during the wait exits 0.
#[tokio::test]
async fn segward_run_takes_the_agent_from_spiffe_endpoint_socket() {
    let world = World::new().await;
    let text = std::fs::read_to_string(&world.config).unwrap();
    let without_identity: String = text
        .lines()
        .filter(|line| !line.starts_with("identity:") && !line.contains("workload_api:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let config = world.pki.dir().join("segward-env.yaml");
    std::fs::write(&config, without_identity).unwrap();

    // SIGTERM while waiting for the first SVID: a clean exit.
    let mut waiting = spawn_with_endpoint(&config, &world.agent.uri());
    wait_until_admin_answers(&mut waiting, world.admin).await;
    assert_eq!(world.readyz().await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(waiting.stop().await.matches("panicked").count(), 0);

    let (issued, svid) = world.svid_for(API);
    world.agent.push(svid);
    let mut segward = spawn_with_endpoint(&config, &world.agent.uri());
    segward.until_listening(world.inbound).await;
    assert_eq!(world.presented().await, issued);
    assert_eq!(world.readyz().await.0, StatusCode::OK);
    segward.stop().await;
}

fn spawn_with_endpoint(config: &Path, uri: &str) -> Segward {
    Segward::spawn_with_env(config, &[("SPIFFE_ENDPOINT_SOCKET", uri)])
}

async fn wait_until_admin_answers(segward: &mut Segward, admin: SocketAddr) {
    let up = eventually(WAIT, || async {
        PlainClient::get(admin, "/readyz").await.is_ok()
    })
    .await;
    assert!(up, "admin never answered:\n{}", segward.stderr());
}
