//! The Kubernetes manifests (docs/fleet.md#kubernetes), proven without a cluster:
//! deploy/kubernetes/ is read as files and checked against the sidecar configs it carries,
//! which must load as segward loads them, and against docker-compose.yml's demo fleet; the
//! demo's policy slices are what `segward policy slice` writes for the shipped policy, and each
//! sidecar mounts the slice of its own identity. The schemas themselves are
//! scripts/validate-k8s.sh's job (CI), not this file's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use segward::config::{self, Config};
use segward::identity::SpiffeId;
use segward::policy::{self, Fleet, PolicySource, Scope};

use super::cli::segward;
use super::compose::topology::{CERTS_MOUNT, POLICY_MOUNT, Topology, listen_ports, root, text};
use super::slice_cmd::tree;

/// The policy ConfigMap of the whole fleet policy, from deploy/kubernetes/policy (the base
/// mounts it; the demo's pods mount their slice, `segward-policy-<segment>`).
const POLICY_CONFIGMAP: &str = "segward-policy";
/// The demo's slices: `segward policy slice policies/ --per segment --out` this.
const DEMO_SLICES: &str = "deploy/kubernetes/overlays/demo/slices";
/// The command that writes them, from the repository's root.
const RESLICE: &str =
    "segward policy slice policies/ --per segment --out deploy/kubernetes/overlays/demo/slices/";
/// Where each pod mounts its sidecar config ConfigMap.
const CONFIG_DIR: &str = "/etc/segward/config";

// --- the copies kustomize reads ---------------------------------------------------------------

#[test]
fn every_copy_kustomize_reads_is_identical_to_the_repositorys_file() {
    let copies = [
        ("deploy/kubernetes/policy/fleet.yaml", "policies/fleet.yaml"),
        ("deploy/kubernetes/overlays/demo/echo.py", "deploy/echo.py"),
    ];
    let sidecars = yaml_files(&root("deploy/sidecars"));
    assert!(sidecars.len() >= 7, "{sidecars:?}");
    let demo = yaml_files(&root("deploy/kubernetes/overlays/demo/sidecars"));
    let names = |files: &[PathBuf]| -> Vec<PathBuf> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().into())
            .collect()
    };
    assert_eq!(
        names(&demo),
        names(&sidecars),
        "one copy per deploy/sidecars/*.yaml"
    );
    let sidecar_copies = sidecars
        .iter()
        .zip(&demo)
        .map(|(s, d)| (d.clone(), s.clone()));
    let all = copies
        .iter()
        .map(|(copy, source)| (root(copy), root(source)))
        .chain(sidecar_copies);
    for (copy, source) in all {
        assert_eq!(
            text(&copy),
            text(&source),
            "{} differs from {}: copy it again (kustomize reads only inside its folder)",
            copy.display(),
            source.display()
        );
    }
}

#[test]
fn the_policy_configmap_keeps_its_name_so_a_change_reloads_instead_of_rolling_the_pods() {
    let kustomization = Kustomization::read("deploy/kubernetes/policy");
    let generator = kustomization.generator(POLICY_CONFIGMAP);
    assert_eq!(generator["options"]["disableNameSuffixHash"], true);
    let files = kustomization.generated(POLICY_CONFIGMAP);
    assert_eq!(files.keys().collect::<Vec<_>>(), ["fleet.yaml"]);
    segward::policy::from_text("fleet.yaml", &files["fleet.yaml"]).unwrap();
}

// --- the base: one workload, csi-driver-spiffe ------------------------------------------------

#[test]
fn the_base_pod_matches_its_sidecar_config_and_reads_the_csi_driver_spiffe_files() {
    let base = Kustomization::read("deploy/kubernetes/base");
    let configs = base.configs("segward-config");
    let deployment = base.object("Deployment", "app");
    let pod = Pod::new(deployment, &configs);
    pod.check();

    let (_, config) = pod.sidecars().pop().unwrap();
    let policy = pod.volume_mount_of(&config.policy);
    assert_eq!(pod.volume(&policy)["configMap"]["name"], POLICY_CONFIGMAP);
    let identity = pod.volume_mount_of(&config.identity.files().unwrap().cert);
    assert_eq!(
        pod.volume(&identity)["csi"]["driver"],
        "spiffe.csi.cert-manager.io"
    );
    assert_eq!(
        pod.volume(&identity)["csi"]["volumeAttributes"]["spiffe.csi.cert-manager.io/fs-group"],
        pod.spec["securityContext"]["runAsGroup"].to_string(),
        "the key is readable by the sidecar's group"
    );
    let file = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    let bundles: Vec<String> = config
        .identity
        .files()
        .unwrap()
        .bundles
        .values()
        .map(|b| file(b))
        .collect();
    assert_eq!(
        (
            file(&config.identity.files().unwrap().cert),
            file(&config.identity.files().unwrap().key),
            bundles
        ),
        ("tls.crt".into(), "tls.key".into(), vec!["ca.crt".into()]),
        "the files csi-driver-spiffe writes"
    );
    for path in config
        .identity
        .files()
        .unwrap()
        .bundles
        .values()
        .chain([&config.identity.files().unwrap().key])
    {
        assert_eq!(pod.volume_mount_of(path), identity, "{}", path.display());
    }
    base.object(
        "ServiceAccount",
        pod.spec["serviceAccountName"].as_str().unwrap(),
    );
    check_service(base.object("Service", "app"), &pod);
}

#[test]
fn the_spire_component_changes_only_the_identity_to_the_mounted_agent_socket() {
    let component = Kustomization::read("deploy/kubernetes/components/spire");
    let spire = &component.generated("segward-config")["segward.yaml"];
    let base =
        &Kustomization::read("deploy/kubernetes/base").generated("segward-config")["segward.yaml"];

    // The SPIRE variant's config loads in full, its identity from the agent's socket.
    let raw = config::parse_yaml("spire/segward.yaml", spire).unwrap();
    let loaded = Config::from_raw(raw, Path::new("/")).unwrap();
    let api = loaded
        .identity
        .workload_api()
        .expect("identity from the Workload API");
    assert_eq!(api.named_by, "identity.workload_api");
    let (mut spire, mut base) = (yaml(spire), yaml(base));
    let socket = spire["identity"]["workload_api"]
        .as_str()
        .unwrap()
        .to_owned();
    spire.as_object_mut().unwrap().remove("identity");
    base.as_object_mut().unwrap().remove("identity");
    assert_eq!(spire, base, "everything but identity as in the base");

    let ops: Vec<Value> =
        serde_saphyr::from_str(component.raw["patches"][0]["patch"].as_str().unwrap()).unwrap();
    let value = |suffix: &str| {
        let op = ops
            .iter()
            .find(|o| o["op"] == "replace" && o["path"].as_str().unwrap().ends_with(suffix));
        op.unwrap_or_else(|| panic!("a replace of …{suffix}"))["value"].clone()
    };
    let mount = value("/mountPath");
    assert_eq!(
        socket,
        format!("unix://{}/spire-agent.sock", mount.as_str().unwrap()),
        "the socket is in the mounted volume"
    );
    assert_eq!(api.endpoint.to_string(), socket);
    assert_eq!(value("/volumes/2")["csi"]["driver"], "csi.spiffe.io");
}

// --- the demo overlay: docker-compose.yml's fleet ---------------------------------------------

#[test]
fn the_demo_overlay_runs_every_compose_sidecar_in_its_workloads_pod_with_its_minted_identity() {
    let topology = Topology::read();
    let demo = Kustomization::read("deploy/kubernetes/overlays/demo");
    let slices = Kustomization::read(DEMO_SLICES);
    let configs = demo.configs("demo-sidecar-configs");
    let deployments = demo.objects("Deployment");
    let apps: BTreeSet<&str> = topology.sidecars.iter().map(|s| s.app().unwrap()).collect();
    let names: BTreeSet<&str> = deployments.iter().map(|d| name(d)).collect();
    assert_eq!(names, apps, "one Deployment per compose workload");

    let mut seen = BTreeSet::new();
    for deployment in deployments {
        let pod = Pod::new(deployment, &configs);
        pod.check();
        demo.object(
            "ServiceAccount",
            pod.spec["serviceAccountName"].as_str().unwrap(),
        );
        for (file, config) in pod.sidecars() {
            let sidecar = topology
                .sidecars
                .iter()
                .find(|s| s.file.file_name().unwrap() == file.as_str())
                .unwrap_or_else(|| panic!("{file} is no compose sidecar's"));
            assert_eq!(
                sidecar.app(),
                Some(name(deployment)),
                "{file}: in its workload's pod"
            );
            let folder = config.identity.files().unwrap().cert.parent().unwrap();
            let svid = pod.volume_mount_of(&config.identity.files().unwrap().cert);
            assert_eq!(
                pod.volume(&svid)["secret"]["secretName"],
                format!(
                    "segward-svid-{}",
                    folder.strip_prefix(CERTS_MOUNT).unwrap().display()
                ),
                "{file}: the Secret secrets.sh makes from mint-certs.sh's folder"
            );
            for (td, bundle) in &config.identity.files().unwrap().bundles {
                assert_eq!(
                    bundle,
                    &Path::new(CERTS_MOUNT).join(format!("bundles/{td}.pem"))
                );
                let bundles = pod.volume_mount_of(bundle);
                assert_eq!(
                    pod.volume(&bundles)["secret"]["secretName"],
                    "segward-bundles"
                );
            }
            assert!(seen.insert(topology.own_id(sidecar).clone()), "{file}");
        }
        let init = pod.spec["initContainers"].as_array().unwrap();
        for (container, (file, config)) in init.iter().zip(pod.sidecars()) {
            let mut sidecars = topology.sidecars.iter();
            let sidecar = sidecars.find(|s| s.file.file_name().unwrap() == file.as_str());
            let own = topology.own_id(sidecar.unwrap());
            let configmap = pod.policy_configmap(container, config);
            check_own_slice(&slices, &configmap, own, &file);
        }
    }
    let minted: BTreeSet<_> = topology.minted.values().cloned().collect();
    assert_eq!(seen, minted, "every compose identity runs in the demo");
}

#[test]
fn every_demo_destination_is_a_service_on_its_callees_inbound_listener() {
    let topology = Topology::read();
    let demo = Kustomization::read("deploy/kubernetes/overlays/demo");
    let configs = demo.configs("demo-sidecar-configs");

    for (caller, name, destination) in topology.destinations() {
        let host = destination.address.host();
        let service = demo.object("Service", host);
        let port = &service["spec"]["ports"][0];
        assert_eq!(
            port["port"],
            destination.address.port(),
            "{}: {name}",
            caller.service
        );
        let callee = Pod::new(demo.object("Deployment", host), &configs);
        check_service(service, &callee);
    }
}

/// The ConfigMap `configmap` of the demo's slices holds every rule the slice of the whole
/// shipped policy for `own` keeps — all its sidecar's decisions can use — and fewer rules than
/// the whole policy.
fn check_own_slice(slices: &Kustomization, configmap: &str, own: &SpiffeId, at: &str) {
    let texts = slices.generated(configmap);
    let texts = texts.iter().filter(|(name, _)| name.ends_with(".yaml"));
    let mounted = PolicySource::from_texts(texts.map(|(n, t)| (n.as_str(), t.as_str())));
    let mounted = policy::compile(&mounted.unwrap()).unwrap_or_else(|e| panic!("{at}: {e}"));
    let whole = PolicySource::read(&root("policies")).unwrap();
    let whole = PolicySource::from_texts(whole.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    let whole = whole.unwrap();
    let now = policy::unix_now();
    let fleet = Fleet::check(&whole, now).unwrap();
    let own_slice = fleet.at(now).compile(whole, &Scope::identity(own.clone()));
    let own_slice = own_slice.unwrap();
    let names = |p: &policy::CompiledPolicy| -> BTreeSet<String> {
        p.rules().iter().map(|r| r.name.clone()).collect()
    };
    let (needed, held) = (names(&own_slice), names(&mounted));
    assert!(
        needed.is_subset(&held),
        "{at} ({own}) mounts {configmap}, which lacks {:?} of its slice",
        needed.difference(&held).collect::<Vec<_>>()
    );
    assert!(
        held.len() < own_slice.fleet_rules(),
        "{at}: {configmap} is the whole policy, not a slice"
    );
}

/// The demo's slices are exactly what `policy slice --per segment` writes for the shipped
/// policy today, so they cannot drift from policies/.
#[test]
fn the_demo_slices_are_what_policy_slice_writes_for_the_shipped_policy() {
    let out = tempfile::TempDir::new().unwrap();
    let written = out.path().join("slices");
    let args = ["policy", "slice", "policies/", "--per", "segment", "--out"];
    let run = segward(&[&args[..], &[written.to_str().unwrap()]].concat());
    assert_eq!(run.code, 0, "{run:?}");
    let (fresh, checked_in) = (tree(&written), tree(&root(DEMO_SLICES)));
    let names = |t: &BTreeMap<PathBuf, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&checked_in),
        names(&fresh),
        "{DEMO_SLICES} is not what `policy slice` writes; from the repository's root run:\n  \
         {RESLICE}"
    );
    for (file, bytes) in &fresh {
        assert!(
            checked_in[file] == *bytes,
            "{DEMO_SLICES}/{} is not what `policy slice` writes; from the repository's root \
             run:\n  {RESLICE}",
            file.display()
        );
    }
}

/// The documented CI sequence — `certs signing-key`, `policy slice --per segment --sign`,
/// `policy check --verify-key` — signs every slice; it adds only `policy.sig` to each folder
/// and its ConfigMap, so the signed output is the checked-in layout plus the signatures.
#[test]
fn signing_the_demo_slices_in_ci_adds_only_a_verified_policy_sig_to_each_slice_configmap() {
    let ci = tempfile::TempDir::new().unwrap();
    let keys = ci.path().join("ci-keys");
    let signed = ci.path().join("slices");
    let run = segward(&["certs", "signing-key", "--out", keys.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let key = keys.join("signing.key");
    let args = ["policy", "slice", "policies/", "--per", "segment", "--sign"];
    let out = ["--out", signed.to_str().unwrap()];
    let run = segward(&[&args[..], &[key.to_str().unwrap()], &out[..]].concat());
    assert_eq!(run.code, 0, "{run:?}");

    let (signed_tree, checked_in) = (tree(&signed), tree(&root(DEMO_SLICES)));
    let kustomization = Path::new("kustomization.yaml");
    let mut groups = 0;
    for (file, bytes) in &signed_tree {
        if file == kustomization {
            continue;
        }
        if file.file_name().unwrap() == "policy.sig" {
            groups += 1;
            let folder = signed.join(file.parent().unwrap());
            let pubkey = keys.join("signing.pub");
            let check = ["policy", "check", folder.to_str().unwrap(), "--verify-key"];
            let run = segward(&[&check[..], &[pubkey.to_str().unwrap()]].concat());
            assert_eq!(run.code, 0, "{run:?}");
            assert!(run.stdout.starts_with("signature: ok"), "{run:?}");
            continue;
        }
        assert!(checked_in.get(file) == Some(bytes), "{}", file.display());
    }
    assert_eq!(
        groups,
        checked_in.len() - 1,
        "one policy.sig per slice folder"
    );
    let lines = |t: &BTreeMap<PathBuf, Vec<u8>>| -> Vec<String> {
        let text = String::from_utf8(t[kustomization].clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    };
    let (with_sig, without) = (lines(&signed_tree), lines(&checked_in));
    let sig_lines: Vec<&String> = with_sig
        .iter()
        .filter(|l| l.contains("policy.sig"))
        .collect();
    assert_eq!(
        sig_lines.len(),
        groups,
        "every slice's ConfigMap lists its policy.sig"
    );
    let rest: Vec<String> = with_sig
        .iter()
        .filter(|l| !l.contains("policy.sig"))
        .cloned()
        .collect();
    assert_eq!(rest, without);
}

/// demo-signed: the demo with `policy_verify` in every sidecar config (the demo's configs
/// plus two lines), the public key mounted where those lines point in every segward
/// container, from a ConfigMap the operator makes; no private key anywhere under deploy/.
#[test]
fn the_signed_demo_verifies_every_slice_with_the_public_key_the_operator_supplies() {
    const BLOCK: &str = "policy_verify:\n  keys: [/etc/segward/keys/signing.pub]";
    let component = Kustomization::read("deploy/kubernetes/components/demo-policy-verify");
    let verifying = component.generated("demo-sidecar-configs");
    let demo = Kustomization::read("deploy/kubernetes/overlays/demo");
    let plain = demo.generated("demo-sidecar-configs");
    assert_eq!(
        verifying.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>()
    );
    for (file, text) in &verifying {
        let added = text.strip_prefix(plain[file].as_str());
        let added =
            added.unwrap_or_else(|| panic!("{file}: not the demo's config plus policy_verify"));
        assert!(added.starts_with(BLOCK), "{file}: {added}");
        assert_eq!(added.lines().count(), 2, "{file}: {added}");
        let keys = &yaml(text)["policy_verify"]["keys"];
        assert_eq!(keys, &serde_json::json!(["/etc/segward/keys/signing.pub"]));
    }
    let overlay = yaml(&text(&root(
        "deploy/kubernetes/overlays/demo-signed/kustomization.yaml",
    )));
    assert_eq!(overlay["resources"], serde_json::json!(["../demo"]));
    assert_eq!(
        overlay["components"],
        serde_json::json!(["../../components/demo-policy-verify"])
    );
    // No private key is shipped: nothing under deploy/ is a PKCS#8 private key.
    for file in tree(&root("deploy")).into_values() {
        let text = String::from_utf8_lossy(&file);
        assert!(
            !text.contains("BEGIN PRIVATE KEY"),
            "a private key under deploy/"
        );
    }
    // Rendered (with the venv's kubectl of scripts/validate-k8s.sh, when it was made): every
    // segward container mounts the keys ConfigMap where policy_verify points.
    let kubectl = root("target/k8s-validate/bin/kubectl");
    if !kubectl.is_file() {
        return;
    }
    let out = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(root("deploy/kubernetes/overlays/demo-signed"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let mut containers = 0;
    for deployment in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let spec = &deployment["spec"]["template"]["spec"];
        let volumes = spec["volumes"].as_array().unwrap();
        let keys = volumes.iter().find(|v| v["name"] == "policy-keys").unwrap();
        assert_eq!(keys["configMap"]["name"], "segward-policy-verify-keys");
        for container in spec["initContainers"].as_array().unwrap() {
            let mounts = container["volumeMounts"].as_array().unwrap();
            let mount = mounts.iter().find(|m| m["name"] == "policy-keys");
            let mount = mount.unwrap_or_else(|| panic!("{}: no keys", container["name"]));
            assert_eq!(mount["mountPath"], "/etc/segward/keys");
            assert_eq!(mount["readOnly"], true);
            containers += 1;
        }
    }
    assert_eq!(containers, verifying.len(), "every segward container");
}

// --- one pod ---------------------------------------------------------------------------------

/// A Deployment's pod template with the sidecar configs its ConfigMap holds.
struct Pod<'a> {
    name: String,
    labels: &'a Value,
    spec: &'a Value,
    configs: &'a BTreeMap<String, Config>,
}

impl<'a> Pod<'a> {
    fn new(deployment: &'a Value, configs: &'a BTreeMap<String, Config>) -> Pod<'a> {
        let spec = &deployment["spec"]["template"]["spec"];
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        Pod {
            name: name(deployment).to_owned(),
            labels,
            spec,
            configs,
        }
    }

    /// The segward native sidecars: (config file name, its config).
    fn sidecars(&self) -> Vec<(String, &'a Config)> {
        let init = self.spec["initContainers"].as_array().unwrap().iter();
        init.map(|c| {
            let args = c["args"].as_array().unwrap();
            assert_eq!(args[..2], ["run", "--config"], "{}", self.name);
            let path = Path::new(args[2].as_str().unwrap());
            assert_eq!(
                self.volume_mount_of(path),
                "config",
                "{}: --config",
                self.name
            );
            let file = path.strip_prefix(CONFIG_DIR).unwrap().display().to_string();
            let config = self.configs.get(&file);
            (
                file.clone(),
                config.unwrap_or_else(|| panic!("{}: no {file}", self.name)),
            )
        })
        .collect()
    }

    /// Every rule a pod with segward sidecars keeps, whatever its identity source.
    fn check(&self) {
        let at = &self.name;
        let pod_security = &self.spec["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], true, "{at}");
        assert!(
            pod_security["runAsUser"].as_u64().unwrap() > 0,
            "{at}: a fixed non-root UID"
        );
        assert_eq!(
            pod_security["seccompProfile"]["type"], "RuntimeDefault",
            "{at}"
        );
        let containers = self.spec["initContainers"].as_array().unwrap().iter();
        for container in containers.chain(self.spec["containers"].as_array().unwrap()) {
            let security = &container["securityContext"];
            let at = format!("{at}/{}", container["name"]);
            assert_eq!(security["allowPrivilegeEscalation"], false, "{at}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{at}");
            assert_eq!(
                security["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{at}"
            );
            assert!(
                container["lifecycle"].get("preStop").is_none(),
                "{at}: drain via SIGTERM"
            );
            assert!(
                container["resources"]["limits"]["memory"].is_string(),
                "{at}"
            );
        }
        let sidecars = self.sidecars();
        assert!(!sidecars.is_empty(), "{at}: a segward sidecar");
        for (container, (file, config)) in self.spec["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(sidecars)
        {
            self.check_sidecar(container, config, &format!("{at}/{file}"));
        }
    }

    fn check_sidecar(&self, container: &Value, config: &Config, at: &str) {
        assert_eq!(
            container["restartPolicy"], "Always",
            "{at}: a native sidecar"
        );
        assert_eq!(container["image"], "segward:latest", "{at}");
        assert_eq!(container["imagePullPolicy"], "IfNotPresent", "{at}");
        let grace = self.spec["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > config.limits.drain.as_secs(),
            "{at}: grace {grace}s ≤ drain"
        );
        assert_eq!(container["resources"]["requests"]["memory"], "16Mi", "{at}");
        assert_eq!(container["resources"]["limits"]["memory"], "64Mi", "{at}");

        // Container ports: the listeners reachable from outside the pod.
        let ports: BTreeMap<&str, u64> = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["containerPort"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut open: Vec<u64> = config
            .inbound
            .iter()
            .map(|i| i.listen)
            .chain([config.admin_listen])
            .filter(|a| !a.ip().is_loopback())
            .map(|a| u64::from(a.port()))
            .collect();
        open.sort();
        let mut declared: Vec<u64> = ports.values().copied().collect();
        declared.sort();
        assert_eq!(
            declared, open,
            "{at}: containerPorts = non-loopback listen ports"
        );
        let all = listen_ports(config);
        assert!(
            declared
                .iter()
                .all(|p| all.contains(&u16::try_from(*p).unwrap())),
            "{at}"
        );

        // Probes: the admin listener, on the pod IP the kubelet reaches.
        assert!(
            !config.admin_listen.ip().is_loopback(),
            "{at}: admin on the pod IP"
        );
        for (probe, path) in [
            ("startupProbe", "/readyz"),
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"], path, "{at}: {probe}");
            let port = ports[get["port"].as_str().unwrap()];
            assert_eq!(
                port,
                u64::from(config.admin_listen.port()),
                "{at}: {probe} port"
            );
        }

        // The policy folder is a policy ConfigMap (the fleet's, or a slice of it), mounted
        // whole (no subPath).
        let policy = self.policy_configmap(container, config);
        assert!(policy.starts_with(POLICY_CONFIGMAP), "{at}: {policy}");
        assert_eq!(
            config.policy,
            Path::new(POLICY_MOUNT),
            "{at}: as in docker-compose.yml"
        );
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .all(|m| m.get("subPath").is_none() && m["readOnly"] == true),
            "{at}"
        );
    }

    /// The name of the ConfigMap `container` mounts at its config's `policy:` folder.
    fn policy_configmap(&self, container: &Value, config: &Config) -> String {
        let mounts = container["volumeMounts"].as_array().unwrap();
        let mount = mounts
            .iter()
            .find(|m| config.policy == Path::new(m["mountPath"].as_str().unwrap()));
        let volume = mount.unwrap_or_else(|| panic!("{}: no policy mount", self.name));
        let volume = self.volume(volume["name"].as_str().unwrap());
        volume["configMap"]["name"].as_str().unwrap().to_owned()
    }

    /// The volume mounted (in some segward sidecar) at the folder holding `path`.
    fn volume_mount_of(&self, path: &Path) -> String {
        let init = self.spec["initContainers"].as_array().unwrap();
        let mounts = init
            .iter()
            .flat_map(|c| c["volumeMounts"].as_array().unwrap());
        let mount = mounts
            .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len());
        let mount =
            mount.unwrap_or_else(|| panic!("{}: nothing mounted at {}", self.name, path.display()));
        mount["name"].as_str().unwrap().to_owned()
    }

    /// The pod's volume called `name`.
    fn volume(&self, name: &str) -> &'a Value {
        let volumes = self.spec["volumes"].as_array().unwrap();
        volumes.iter().find(|v| v["name"] == name).unwrap()
    }
}

/// A Service's target port is its pod's inbound listener.
fn check_service(service: &Value, pod: &Pod) {
    let (_, config) = pod
        .sidecars()
        .into_iter()
        .find(|(_, c)| !c.inbound.is_empty())
        .unwrap();
    let selector = service["spec"]["selector"].as_object().unwrap();
    assert!(!selector.is_empty(), "{}", pod.name);
    for (key, value) in selector {
        assert_eq!(
            &pod.labels[key], value,
            "{}: the Service selects the pod",
            pod.name
        );
    }
    let port = &service["spec"]["ports"][0];
    let target = port["targetPort"].as_str().unwrap();
    let init = pod.spec["initContainers"].as_array().unwrap();
    let declared = init
        .iter()
        .flat_map(|c| c["ports"].as_array().unwrap())
        .find(|p| p["name"] == target);
    let declared = declared.unwrap_or_else(|| panic!("{}: no port {target}", pod.name));
    assert_eq!(
        declared["containerPort"],
        config.inbound[0].listen.port(),
        "{}",
        pod.name
    );
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(
        ports.len(),
        1,
        "{}: the Service exposes the inbound listener only",
        pod.name
    );
}

// --- reading the kustomizations --------------------------------------------------------------

/// One kustomization folder: its kustomization.yaml and the manifest files it lists.
struct Kustomization {
    dir: PathBuf,
    raw: Value,
    objects: Vec<Value>,
}

impl Kustomization {
    /// Reads `dir`'s kustomization.yaml and its `resources:` files; every manifest file in
    /// the folder must be listed, or `kubectl apply -k` would leave it out.
    fn read(relative: &str) -> Kustomization {
        let dir = root(relative);
        let raw = yaml(&text(&dir.join("kustomization.yaml")));
        let listed: BTreeSet<PathBuf> = raw["resources"]
            .as_array()
            .map(|r| r.iter().map(|r| dir.join(r.as_str().unwrap())).collect())
            .unwrap_or_default();
        let manifests = yaml_files(&dir).into_iter().filter(|f| {
            f.file_name().unwrap() != "kustomization.yaml" && text(f).contains("\nkind: ")
        });
        for manifest in manifests {
            assert!(
                listed.contains(&manifest),
                "{relative}: {} not in resources",
                manifest.display()
            );
        }
        let files = listed.iter().filter(|p| p.is_file());
        let objects = files
            .flat_map(|f| {
                let docs: Vec<Value> = serde_saphyr::from_multiple(&text(f))
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                docs
            })
            .collect();
        Kustomization { dir, raw, objects }
    }

    /// The listed objects of `kind`.
    fn objects(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The listed object of `kind` called `name`.
    fn object(&self, kind: &str, name: &str) -> &Value {
        let found = self
            .objects(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name);
        found.unwrap_or_else(|| panic!("{}: no {kind} {name}", self.dir.display()))
    }

    /// The `configMapGenerator` entry called `name`.
    fn generator(&self, name: &str) -> &Value {
        let generators = self.raw["configMapGenerator"].as_array().unwrap();
        generators.iter().find(|g| g["name"] == name).unwrap()
    }

    /// The generated ConfigMap's data: key (the file's name) → text.
    fn generated(&self, name: &str) -> BTreeMap<String, String> {
        let files = self.generator(name)["files"].as_array().unwrap();
        let entry = |f: &Value| {
            let path = self.dir.join(f.as_str().unwrap());
            let key = path.file_name().unwrap().to_str().unwrap().to_owned();
            (key, text(&path))
        };
        files.iter().map(entry).collect()
    }

    /// The generated ConfigMap's sidecar configs, each loaded as `segward run` loads it.
    fn configs(&self, name: &str) -> BTreeMap<String, Config> {
        let load = |(file, text): (String, String)| {
            let raw = config::parse_yaml(&file, &text).unwrap_or_else(|e| panic!("{e}"));
            let config = Config::from_raw(raw, Path::new(CONFIG_DIR));
            (
                file.clone(),
                config.unwrap_or_else(|e| panic!("{file}: {e}")),
            )
        };
        self.generated(name).into_iter().map(load).collect()
    }
}

/// An object's `metadata.name`.
fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

/// YAML text as a JSON value.
fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap()
}

/// The `*.yaml` files of a folder, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}
