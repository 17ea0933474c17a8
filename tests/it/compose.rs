//! The Docker Compose topology (docs/demo.md, README "Docker"), proven without Docker:
//! `docker-compose.yml`, `deploy/sidecars/*.yaml`, `deploy/mint-certs.sh` and the `Dockerfile`
//! are read as files and checked against each other and against the fleet policy; then the
//! mint script runs for real with the built binary, every sidecar config loads the material
//! it minted, and every caller completes an mTLS handshake with every callee it is configured
//! to reach.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use segward::identity::{SpiffeId, TrustDomain};
use segward::path::normalize;
use segward::policy::{self, Decision, PolicyErrorKind, Request};
use segward::tls::{LiveTls, TlsOptions, client_config, server_config};

use topology::{
    CERTS_MOUNT, CONFIG_MOUNT, HEALTHCHECK_PORT, Minted, POLICY_MOUNT, Topology, healthcheck_port,
    listen_ports, mounts, published, root, run_args, text,
};

pub(crate) mod topology;

// --- the files refer to one another ---------------------------------------------------------

#[test]
fn every_file_the_compose_file_references_is_in_the_repository() {
    let topology = Topology::read();

    for (name, service) in &topology.services {
        for mount in mounts(service).iter().filter(|m| m.is_bind()) {
            let source = root(&mount.source);
            assert!(
                source.exists(),
                "{name}: bind mount {} is missing",
                mount.source
            );
        }
        let build = service.get("build");
        let context = build.and_then(|b| b.as_str().or_else(|| b["context"].as_str()));
        if let Some(context) = context {
            let dockerfile = root(context).join("Dockerfile");
            assert!(dockerfile.is_file(), "{name}: no {}", dockerfile.display());
        }
        for script in run_args(service)
            .iter()
            .filter(|a| a.ends_with(".sh") || a.ends_with(".py"))
        {
            let mount = mounts(service)
                .into_iter()
                .find(|m| m.is_bind() && m.target == *script);
            let mount =
                mount.unwrap_or_else(|| panic!("{name}: runs {script}, mounted from nowhere"));
            assert!(
                root(&mount.source).is_file(),
                "{name}: {} is not a file",
                mount.source
            );
        }
    }
    let mut configs: Vec<PathBuf> = fs::read_dir(root("deploy/sidecars"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    configs.sort();
    let mut mounted: Vec<PathBuf> = topology.sidecars.iter().map(|s| s.file.clone()).collect();
    mounted.sort();
    assert_eq!(
        mounted, configs,
        "each deploy/sidecars/*.yaml is mounted by one sidecar"
    );
}

#[test]
fn every_sidecar_config_is_valid_and_reads_the_mounted_policy_and_certificates() {
    let topology = Topology::read();
    assert!(topology.sidecars.len() >= 7, "{:?}", topology.names());

    for sidecar in &topology.sidecars {
        let service = &topology.services[&sidecar.service];
        let mounts = mounts(service);
        let mounted_at = |target: &str| mounts.iter().find(|m| m.target == target);
        let policy = mounted_at(POLICY_MOUNT).expect("policies mounted");
        assert_eq!(
            (policy.source.as_str(), policy.read_only),
            ("./policies", true),
            "{}: the policy folder is mounted read-only from the host, so editing it reloads",
            sidecar.service
        );
        assert_eq!(
            sidecar.config.policy,
            Path::new(POLICY_MOUNT),
            "{}",
            sidecar.service
        );
        let certs = mounted_at(CERTS_MOUNT).expect("the certs volume mounted");
        assert!(
            !certs.is_bind() && certs.read_only,
            "{}: certs volume, read-only",
            sidecar.service
        );
        let volumes = mounts.iter().filter(|m| !m.is_bind());
        let volumes: Vec<&str> = volumes.map(|m| m.source.as_str()).collect();
        assert_eq!(
            volumes,
            [certs.source.as_str()],
            "{}: no CA key",
            sidecar.service
        );
        let identity = sidecar.config.identity.files().unwrap();
        let files = [&identity.cert, &identity.key]
            .into_iter()
            .chain(identity.bundles.values());
        for file in files {
            assert!(
                file.starts_with(CERTS_MOUNT),
                "{}: {}",
                sidecar.service,
                file.display()
            );
        }
        assert!(
            service["image"].is_string(),
            "{}: image (from x-segward)",
            sidecar.service
        );
        assert_eq!(
            service["image"], topology.services["certs"]["image"],
            "{}",
            sidecar.service
        );
    }
}

#[test]
fn every_sidecar_shares_its_apps_network_and_waits_for_the_minted_certificates() {
    let topology = Topology::read();

    for sidecar in &topology.sidecars {
        let service = &topology.services[&sidecar.service];
        let app = sidecar
            .app()
            .unwrap_or_else(|| panic!("{}: network_mode", sidecar.service));
        let app_service = topology
            .services
            .get(app)
            .expect("network_mode names a service");
        assert!(
            app_service.get("network_mode").is_none(),
            "{app} owns its network"
        );
        assert!(
            topology.sidecar(app).is_none(),
            "{app} is a workload, not a sidecar"
        );
        assert_eq!(
            service["depends_on"]["certs"]["condition"], "service_completed_successfully",
            "{}",
            sidecar.service
        );
        assert!(
            service.get("ports").is_none(),
            "{}: the app publishes",
            sidecar.service
        );
    }
}

#[test]
fn every_sidecar_identity_is_minted_for_it_and_belongs_to_a_policy_segment() {
    let topology = Topology::read();
    let policy = policy::load(&root("policies")).unwrap();

    let mut used = BTreeSet::new();
    for sidecar in &topology.sidecars {
        let identity = sidecar.config.identity.files().unwrap();
        assert_eq!(
            identity.cert.parent(),
            identity.key.parent(),
            "{}",
            sidecar.service
        );
        let id = topology.own_id(sidecar);
        used.insert(id.clone());
        let segments = policy.segment_names(id);
        assert!(
            !segments.is_empty(),
            "{}: {id} is in no segment",
            sidecar.service
        );
        assert!(
            !policy.classify(id).is_revoked(),
            "{}: {id} is revoked",
            sidecar.service
        );
    }
    let minted: BTreeSet<SpiffeId> = topology.minted.values().cloned().collect();
    assert_eq!(
        used, minted,
        "every SVID the script mints is some sidecar's"
    );
}

#[test]
fn every_outbound_destination_is_a_service_reached_through_its_inbound_sidecar() {
    let topology = Topology::read();
    let mut edges = 0;

    for (caller, name, destination) in topology.destinations() {
        let host = destination.address.host();
        let at = format!("{}: destination {name}", caller.service);
        assert_eq!(
            name, host,
            "{at}: `http://{name}/` names the service it reaches"
        );
        assert!(
            topology.services.contains_key(host),
            "{at}: {host} is no service"
        );
        let callee = topology.inbound_sidecar_of(host);
        let callee =
            callee.unwrap_or_else(|| panic!("{at}: no inbound sidecar in {host}'s network"));
        let inbound = callee.config.inbound.first().unwrap();
        assert_eq!(
            destination.address.port(),
            inbound.listen.port(),
            "{at}: port"
        );
        assert_eq!(
            &destination.spiffe_id,
            topology.own_id(callee),
            "{at}: spiffe_id"
        );
        edges += 1;
    }
    assert!(edges >= 11, "{edges} caller → callee edges");
}

#[test]
fn callers_and_callees_hold_each_others_trust_bundles() {
    let topology = Topology::read();

    for (caller, name, destination) in topology.destinations() {
        let callee = topology
            .inbound_sidecar_of(destination.address.host())
            .unwrap();
        let (caller_td, callee_td) = (
            trust_domain(topology.own_id(caller)),
            trust_domain(&destination.spiffe_id),
        );
        assert!(
            caller
                .config
                .identity
                .files()
                .unwrap()
                .bundles
                .contains_key(&callee_td),
            "{} cannot verify {name}'s server certificate: no {callee_td} bundle",
            caller.service
        );
        assert!(
            callee
                .config
                .identity
                .files()
                .unwrap()
                .bundles
                .contains_key(&caller_td),
            "{} cannot verify {}'s client certificate: no {caller_td} bundle",
            callee.service,
            caller.service
        );
    }
}

#[test]
fn listeners_sharing_a_network_do_not_collide_and_each_admin_port_is_published_once() {
    let topology = Topology::read();
    let mut host_ports = BTreeSet::new();

    for (app, sidecars) in topology.namespaces() {
        let mut ports = BTreeSet::new();
        for sidecar in &sidecars {
            for port in listen_ports(&sidecar.config) {
                assert!(ports.insert(port), "{app}: port {port} bound twice");
            }
            let health = healthcheck_port(&topology.services[&sidecar.service]);
            assert_eq!(
                health,
                sidecar.config.admin_listen.port(),
                "{}: HEALTHCHECK port",
                sidecar.service
            );
        }
        let admin: BTreeSet<u16> = sidecars
            .iter()
            .map(|s| s.config.admin_listen.port())
            .collect();
        let published = published(&topology.services[app]);
        let container: BTreeSet<u16> = published.iter().map(|(_, c)| *c).collect();
        assert_eq!(
            container, admin,
            "{app}: publishes exactly its sidecars' admin ports"
        );
        for (host, _) in published {
            assert!(host_ports.insert(host), "host port {host} published twice");
        }
    }
}

#[test]
fn every_inbound_sidecar_forwards_to_its_app_on_loopback() {
    let topology = Topology::read();
    let echo = text(&root("deploy/echo.py"));

    for sidecar in topology
        .sidecars
        .iter()
        .filter(|s| !s.config.inbound.is_empty())
    {
        let upstream = &sidecar.config.inbound.first().unwrap().upstream;
        assert_eq!(
            upstream.host(),
            "127.0.0.1",
            "{}: the app is reachable only inside",
            sidecar.service
        );
        let app = &topology.services[sidecar.app().unwrap()];
        assert!(
            run_args(app).iter().any(|a| a.ends_with("echo.py")),
            "{}",
            sidecar.service
        );
        let bind = format!("(\"{}\", {})", upstream.host(), upstream.port());
        assert!(echo.contains(&bind), "deploy/echo.py binds {bind}");
    }
}

// --- the minted certificates work -----------------------------------------------------------

#[test]
fn the_minted_certificates_load_for_every_sidecar_config_and_a_second_run_keeps_the_cas() {
    let topology = Topology::read();
    let pki = Minted::new();

    for sidecar in &topology.sidecars {
        let credentials = pki.credentials(sidecar);
        assert_eq!(
            credentials.id(),
            topology.own_id(sidecar),
            "{}",
            sidecar.service
        );
        for (td, bundle) in &sidecar.config.identity.files().unwrap().bundles {
            let ca_bundle = pki.ca.path().join(td.as_str()).join("bundle.pem");
            assert_eq!(
                fs::read(pki.path(bundle)).unwrap(),
                fs::read(ca_bundle).unwrap(),
                "{td}"
            );
        }
    }

    let ca_before = fs::read(pki.ca.path().join("example.org/ca.pem")).unwrap();
    let svid = pki.certs.path().join("frontend/svid.pem");
    let svid_before = fs::read(&svid).unwrap();
    pki.run();
    assert_eq!(
        fs::read(pki.ca.path().join("example.org/ca.pem")).unwrap(),
        ca_before
    );
    assert_ne!(
        fs::read(&svid).unwrap(),
        svid_before,
        "SVIDs are re-issued (rotation)"
    );
    for sidecar in &topology.sidecars {
        pki.credentials(sidecar);
    }
}

#[tokio::test]
async fn every_caller_completes_an_mtls_handshake_with_every_callee_it_reaches() {
    let topology = Topology::read();
    let pki = Minted::new();

    for (caller, name, destination) in topology.destinations() {
        let callee = topology
            .inbound_sidecar_of(destination.address.host())
            .unwrap();
        let client = LiveTls::new(pki.credentials(caller)).unwrap();
        let server = LiveTls::new(pki.credentials(callee)).unwrap();
        let client = client_config(&client, &destination.spiffe_id, TlsOptions::default()).unwrap();
        let server = server_config(&server, TlsOptions::default()).unwrap();
        let (near, far) = tokio::io::duplex(64 * 1024);
        let host = ServerName::try_from(name.to_owned()).unwrap();
        let (accepted, connected) = tokio::join!(
            TlsAcceptor::from(server).accept(far),
            TlsConnector::from(client).connect(host, near)
        );
        let at = format!("{} → {name}", caller.service);
        connected.unwrap_or_else(|e| panic!("{at}: client side: {e}"));
        let accepted = accepted.unwrap_or_else(|e| panic!("{at}: server side: {e}"));
        let peer = accepted.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(
            peer,
            pki.credentials(caller).chain()[0],
            "{at}: the caller's SVID"
        );
    }
}

// --- README "Docker" tells the truth --------------------------------------------------------

/// The calls README "Docker" shows, with the decision and deciding rule it promises.
const README_CALLS: &[&str] = &[
    // caller (its sidecar), destination, method, path, decision, deciding rule
    "frontend payments POST /v1/charges allow frontend-creates-charges",
    "frontend payments GET /v1/charges allow frontend-creates-charges",
    "frontend payments GET /admin/keys deny no-admin-api",
    "frontend ledger GET /v1/entries deny default-deny",
    "ci-runner payments GET /v1/charges deny staging-never-reaches-prod",
    "agent-read payments GET /v1/charges/ch_1 allow agents-read-charges-and-entries",
    "agent-read payments POST /v1/refunds deny agent-read-is-read-only",
    "agent-write payments POST /v1/refunds allow agents-issue-refunds",
    "agent-read payments GET /v1/charges/%2e%2e/%2e%2e/admin/keys deny no-admin-api",
    "partner payments POST /v1/webhooks/partner allow partner-sends-webhooks",
    "partner ledger GET /v1/entries deny third-parties-never-touch-the-ledger",
    "payments ledger POST /v1/entries allow payments-writes-ledger",
];

#[test]
fn the_readme_docker_calls_get_the_decisions_the_readme_promises() {
    let topology = Topology::read();
    let policy = policy::load(&root("policies")).unwrap();

    for row in README_CALLS {
        let words: Vec<&str> = row.split_whitespace().collect();
        let [caller, name, method, path, decision, rule] = words[..] else {
            panic!("bad row: {row}");
        };
        let caller = topology.sidecar(&format!("{caller}-sidecar")).unwrap();
        let outbound = caller.config.outbound.as_ref().unwrap();
        let destination = outbound.destination(name).unwrap();
        let path = normalize(path).unwrap();
        let request = Request {
            source: topology.own_id(caller),
            destination: &destination.spiffe_id,
            method,
            path: &path,
        };
        let verdict = policy.decide(&request);
        let got = (verdict.decision.as_str(), verdict.rule_label());
        assert_eq!(got, (decision, rule), "{row}");
    }
}

#[test]
fn revoking_the_partner_applies_but_revoking_the_agent_alone_breaks_the_policys_own_tests() {
    let topology = Topology::read();
    let fleet = text(&root("policies/fleet.yaml"));
    let partner = topology.own_id(topology.sidecar("partner-sidecar").unwrap());
    let agent_read = topology.own_id(topology.sidecar("agent-read-sidecar").unwrap());

    // README "Docker": the partner's credential leaked; one line under `revoked:` cuts it off.
    let revoked = policy::from_text("fleet.yaml", &revoke(&fleet, partner)).unwrap();
    let payments = SpiffeId::parse("spiffe://example.org/ns/prod/sa/payments").unwrap();
    let path = normalize("/v1/webhooks/partner").unwrap();
    let request = Request {
        source: partner,
        destination: &payments,
        method: "POST",
        path: &path,
    };
    let verdict = revoked.decide(&request);
    assert_eq!(
        (verdict.decision, verdict.rule_label()),
        (Decision::Deny, "revoked")
    );

    // The agent's read ID is pinned by fleet.yaml's `tests:`: that edit alone is refused and
    // the last good policy stays in force, as the README says.
    let errors = policy::from_text("fleet.yaml", &revoke(&fleet, agent_read)).unwrap_err();
    assert!(!errors.0.is_empty());
    for error in &errors.0 {
        assert!(
            matches!(error.kind, PolicyErrorKind::TestFailed { .. }),
            "{error}"
        );
    }
}

// --- the image ------------------------------------------------------------------------------

#[test]
fn the_dockerfile_builds_in_stages_and_runs_segward_as_a_non_root_user_with_a_health_check() {
    let dockerfile = instructions(&text(&root("Dockerfile")));
    let runtime = stage(&dockerfile, "runtime");
    let build = stage(&dockerfile, "build");

    // One slim runtime; two ways to put the binary in: built from source in a Rust image
    // (the default: the last stage), or the host's build (no Rust image, no BuildKit: it
    // comes before the build stage, where the legacy builder stops).
    assert!(
        !runtime[0].1.starts_with("rust:"),
        "small runtime: {}",
        runtime[0].1
    );
    assert!(build[0].1.starts_with("rust:"), "{}", build[0].1);
    let last = last_stage(&dockerfile);
    assert_eq!(
        last[0].1, "runtime AS from-source",
        "from source by default"
    );
    assert!(
        args(last, "COPY")
            .iter()
            .any(|c| c.starts_with("--from=build "))
    );
    let host = stage(&dockerfile, "host-binary");
    assert_eq!(host[0].1, "runtime AS host-binary");
    assert_eq!(
        args(host, "COPY"),
        ["target/docker/segward /usr/local/bin/segward"]
    );
    let position = |name: &str| {
        let named = format!(" AS {name}");
        dockerfile
            .iter()
            .position(|(k, a)| k == "FROM" && a.ends_with(&named))
    };
    assert!(position("host-binary") < position("build"));

    // The release build is scripts/build-release.sh: the static artifact benches/pair.sh
    // measures, built with the release profile from the lock file for this machine.
    let script = "scripts/build-release.sh";
    assert!(args(build, "RUN").iter().any(|r| r.contains(script)));
    assert!(
        args(build, "COPY")
            .iter()
            .any(|c| c.starts_with("scripts "))
    );
    let built = text(&root(script));
    assert!(
        built.contains("cargo build --release --locked --target"),
        "{built}"
    );
    assert!(built.contains("target-feature=+crt-static"), "{built}");
    // The dependency layer stubs every declared bench, or cargo refuses the manifest: it reads
    // their names from Cargo.toml (the line after each `[[bench]]`), so each must be there.
    let manifest = text(&root("Cargo.toml"));
    let stubs = args(build, "RUN").join(" ");
    assert!(
        stubs.contains(r#"for bench in $(grep -A1 '^\[\[bench\]\]' Cargo.toml"#),
        "{stubs}"
    );
    for bench in manifest.split("[[bench]]\n").skip(1) {
        assert!(
            bench.starts_with("name = \""),
            "a [[bench]] whose next line is not its name: the Dockerfile's stub loop misses it: {}",
            bench.lines().next().unwrap_or_default()
        );
    }

    let user = args(runtime, "USER")
        .pop()
        .expect("a USER in the runtime stage");
    let name = user.split(':').next().unwrap();
    assert!(name != "root" && name != "0", "non-root: {user}");
    let entrypoint: Vec<String> = serde_json::from_str(args(runtime, "ENTRYPOINT")[0]).unwrap();
    assert_eq!(entrypoint, ["segward"]);
    let cmd: Vec<String> = serde_json::from_str(args(runtime, "CMD")[0]).unwrap();
    assert_eq!(cmd, ["run", "--config", CONFIG_MOUNT]);
    let health = args(runtime, "HEALTHCHECK").pop().expect("a HEALTHCHECK");
    assert!(health.contains("/healthz"), "{health}");
    let port = format!("${{SEGWARD_ADMIN_PORT:-{HEALTHCHECK_PORT}}}");
    assert!(health.contains(&port), "{health}");
}

#[test]
fn the_image_prepares_the_volumes_the_certs_job_writes_as_its_user() {
    let topology = Topology::read();
    let dockerfile = instructions(&text(&root("Dockerfile")));
    let runtime_runs = args(stage(&dockerfile, "runtime"), "RUN");

    let writable = mounts(&topology.services["certs"])
        .into_iter()
        .filter(|m| !m.is_bind() && !m.read_only);
    let targets: Vec<String> = writable.map(|m| m.target).collect();
    assert_eq!(targets.len(), 2, "the ca and certs volumes: {targets:?}");
    for target in targets {
        let owned = runtime_runs
            .iter()
            .any(|r| r.contains("install -d -o segward") && r.contains(&format!(" {target}")));
        assert!(
            owned,
            "the image creates {target} owned by its user, so a new volume is writable"
        );
    }
}

#[test]
fn the_build_context_leaves_out_build_output_git_and_keys_but_not_the_sources() {
    let ignored: Vec<String> = text(&root(".dockerignore"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for needed in ["target/*", ".git", "certs/*"] {
        assert!(
            ignored.iter().any(|i| i == needed),
            "{needed} not in .dockerignore"
        );
    }
    let dockerfile = instructions(&text(&root("Dockerfile")));
    let copies = dockerfile
        .iter()
        .filter(|(k, a)| k == "COPY" && !a.starts_with("--from"));
    for (_, args) in copies {
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                !ignored.iter().any(|i| i == source),
                "COPY {source} is in .dockerignore"
            );
        }
    }
    // target/ is left out but for the host-built binary the host-binary stage copies.
    assert!(ignored.iter().any(|i| i == "!target/docker"), "{ignored:?}");
}

// --- reading the policy and the Dockerfile --------------------------------------------------

/// fleet.yaml with `id` added under `revoked:`.
fn revoke(fleet: &str, id: &SpiffeId) -> String {
    let entry = "  - spiffe://example.org/ns/prod/sa/legacy-batch\n";
    assert!(fleet.contains(entry), "fleet.yaml revokes legacy-batch");
    fleet.replacen(entry, &format!("{entry}  - {id}\n"), 1)
}

fn trust_domain(id: &SpiffeId) -> TrustDomain {
    TrustDomain::parse(id.trust_domain()).unwrap()
}

/// Dockerfile instructions, continuation lines joined: (KEYWORD, arguments).
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let joined = dockerfile.replace("\\\n", " ");
    let lines = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let split = |l: &str| {
        let (keyword, args) = l.split_once(' ').unwrap_or((l, ""));
        (keyword.to_ascii_uppercase(), args.trim().to_owned())
    };
    lines.map(split).collect()
}

/// The arguments of every `keyword` instruction in `stage`.
fn args<'d>(stage: &'d [(String, String)], keyword: &str) -> Vec<&'d str> {
    let matching = stage.iter().filter(|(k, _)| k == keyword);
    matching.map(|(_, a)| a.as_str()).collect()
}

/// The instructions of the last stage, its `FROM` included: what `docker build` makes.
fn last_stage(dockerfile: &[(String, String)]) -> &[(String, String)] {
    let last_from = dockerfile
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    &dockerfile[last_from..]
}

/// The instructions of the stage `FROM … AS name`, its `FROM` included.
fn stage<'d>(dockerfile: &'d [(String, String)], name: &str) -> &'d [(String, String)] {
    let named = format!(" AS {name}");
    let start = dockerfile
        .iter()
        .position(|(k, a)| k == "FROM" && a.ends_with(&named))
        .unwrap_or_else(|| panic!("no stage {name}"));
    let end = dockerfile[start + 1..]
        .iter()
        .position(|(k, _)| k == "FROM")
        .map_or(dockerfile.len(), |i| start + 1 + i);
    &dockerfile[start..end]
}
