//! The compose topology as the tests see it: docker-compose.yml's services, the segward
//! sidecars among them with their parsed configs, the SPIFFE IDs deploy/mint-certs.sh issues,
//! and [`Minted`], the script run for real into temporary folders.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use serde_json::Value;
use tempfile::TempDir;

use segward::config::{self, Config};
use segward::identity::{SpiffeId, TrustDomain};
use segward::tls::Credentials;

/// The repository root: docker-compose.yml's folder, against which its paths resolve.
pub(crate) const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Where a sidecar's config is mounted; the image's CMD reads it.
pub(crate) const CONFIG_MOUNT: &str = "/etc/segward/segward.yaml";
/// Where `./policies` is mounted in every sidecar.
pub(crate) const POLICY_MOUNT: &str = "/etc/segward/policies";
/// Where the `certs` volume is mounted, and the mint script's `CERTS_DIR` default.
pub(crate) const CERTS_MOUNT: &str = "/certs";
/// The admin port the image's HEALTHCHECK probes unless `SEGWARD_ADMIN_PORT` says otherwise.
pub(crate) const HEALTHCHECK_PORT: u16 = 9901;

// --- the topology, read from the files ------------------------------------------------------

/// docker-compose.yml and everything it points at.
pub(crate) struct Topology {
    /// Service name → its YAML.
    pub(crate) services: serde_json::Map<String, Value>,
    /// The services that run segward with a config from deploy/sidecars/.
    pub(crate) sidecars: Vec<Sidecar>,
    /// Certificate folder (inside the container) → the SPIFFE ID the mint script issues there.
    pub(crate) minted: BTreeMap<PathBuf, SpiffeId>,
}

/// One segward sidecar service.
pub(crate) struct Sidecar {
    /// Its compose service name.
    pub(crate) service: String,
    /// `network_mode`, e.g. `service:payments`.
    network_mode: Option<String>,
    /// Its config file in the repository.
    pub(crate) file: PathBuf,
    /// The config, paths as inside the container.
    pub(crate) config: Config,
}

impl Topology {
    /// Reads docker-compose.yml, the sidecar configs it mounts and the mint script.
    pub(crate) fn read() -> Topology {
        let compose: Value = serde_saphyr::from_str(&text(&root("docker-compose.yml"))).unwrap();
        let services = compose["services"].as_object().expect("services:").clone();
        let sidecars = services
            .iter()
            .filter_map(|(name, s)| Sidecar::read(name, s))
            .collect();
        let minted = minted(&text(&root("deploy/mint-certs.sh")));
        Topology {
            services,
            sidecars,
            minted,
        }
    }

    /// The sidecar service names.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.sidecars.iter().map(|s| s.service.as_str()).collect()
    }

    /// The sidecar service called `service`.
    pub(crate) fn sidecar(&self, service: &str) -> Option<&Sidecar> {
        self.sidecars.iter().find(|s| s.service == service)
    }

    /// The sidecar with an inbound listener in `app`'s network namespace.
    pub(crate) fn inbound_sidecar_of(&self, app: &str) -> Option<&Sidecar> {
        self.sidecars
            .iter()
            .find(|s| s.app() == Some(app) && !s.config.inbound.is_empty())
    }

    /// The ID the mint script issues into the folder of the sidecar's `identity.cert`.
    pub(crate) fn own_id(&self, sidecar: &Sidecar) -> &SpiffeId {
        let folder = sidecar
            .config
            .identity
            .files()
            .unwrap()
            .cert
            .parent()
            .unwrap();
        self.minted.get(folder).unwrap_or_else(|| {
            panic!(
                "{}: deploy/mint-certs.sh issues nothing into {}",
                sidecar.service,
                folder.display()
            )
        })
    }

    /// Every outbound destination: (caller, name, destination).
    pub(crate) fn destinations(&self) -> Vec<(&Sidecar, &str, &config::Destination)> {
        let with_outbound = self
            .sidecars
            .iter()
            .filter_map(|s| Some((s, s.config.outbound.as_ref()?)));
        with_outbound
            .flat_map(|(s, out)| {
                out.destinations
                    .iter()
                    .map(move |(n, d)| (s, n.as_str(), d))
            })
            .collect()
    }

    /// App service → the sidecars sharing its network namespace.
    pub(crate) fn namespaces(&self) -> BTreeMap<&str, Vec<&Sidecar>> {
        let mut namespaces: BTreeMap<&str, Vec<&Sidecar>> = BTreeMap::new();
        for sidecar in &self.sidecars {
            namespaces
                .entry(sidecar.app().unwrap())
                .or_default()
                .push(sidecar);
        }
        namespaces
    }
}

impl Sidecar {
    /// A service that mounts a config where the image reads it; `None` for other services.
    fn read(service: &str, yaml: &Value) -> Option<Sidecar> {
        let mount = mounts(yaml)
            .into_iter()
            .find(|m| m.target == CONFIG_MOUNT)?;
        let file = root(&mount.source);
        let name = file.display().to_string();
        let raw = config::parse_yaml(&name, &text(&file)).unwrap_or_else(|e| panic!("{e}"));
        let config =
            Config::from_raw(raw, Path::new("/")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let network_mode = yaml
            .get("network_mode")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Some(Sidecar {
            service: service.to_owned(),
            network_mode,
            file,
            config,
        })
    }

    /// The app service whose network namespace this sidecar shares.
    pub(crate) fn app(&self) -> Option<&str> {
        self.network_mode.as_deref()?.strip_prefix("service:")
    }
}

/// One short-syntax `volumes:` entry, `SOURCE:TARGET[:ro]`.
pub(crate) struct Mount {
    /// A host path (bind mount) or a volume name.
    pub(crate) source: String,
    /// The path in the container.
    pub(crate) target: String,
    /// `:ro`.
    pub(crate) read_only: bool,
}

impl Mount {
    /// A host path (bind mount) rather than a named volume.
    pub(crate) fn is_bind(&self) -> bool {
        self.source.starts_with('.') || self.source.starts_with('/')
    }
}

/// A service's `volumes:`.
pub(crate) fn mounts(service: &Value) -> Vec<Mount> {
    let Some(volumes) = service.get("volumes") else {
        return Vec::new();
    };
    let entry = |v: &Value| {
        let parts: Vec<&str> = v
            .as_str()
            .expect("short syntax SOURCE:TARGET[:ro]")
            .split(':')
            .collect();
        Mount {
            source: parts[0].to_owned(),
            target: parts[1].to_owned(),
            read_only: parts.get(2) == Some(&"ro"),
        }
    };
    volumes
        .as_array()
        .expect("volumes: a list")
        .iter()
        .map(entry)
        .collect()
}

/// The `entrypoint` and `command` words of a service.
pub(crate) fn run_args(service: &Value) -> Vec<String> {
    let words = ["entrypoint", "command"]
        .into_iter()
        .filter_map(|key| service.get(key)?.as_array());
    words
        .flatten()
        .filter_map(|w| Some(w.as_str()?.to_owned()))
        .collect()
}

/// `HOST_IP:HOST_PORT:CONTAINER_PORT` entries of `ports:`, as (host port, container port).
pub(crate) fn published(service: &Value) -> Vec<(u16, u16)> {
    let Some(ports) = service.get("ports").and_then(Value::as_array) else {
        return Vec::new();
    };
    let entry = |p: &Value| {
        let parts: Vec<u16> = p
            .as_str()
            .unwrap()
            .rsplit(':')
            .take(2)
            .map(|n| n.parse().unwrap())
            .collect();
        (parts[1], parts[0])
    };
    ports.iter().map(entry).collect()
}

/// The admin port the image's HEALTHCHECK probes in this service.
pub(crate) fn healthcheck_port(service: &Value) -> u16 {
    let port = service
        .get("environment")
        .and_then(|e| e.get("SEGWARD_ADMIN_PORT"));
    port.map_or(HEALTHCHECK_PORT, |p| p.as_str().unwrap().parse().unwrap())
}

/// Every port a config listens on.
pub(crate) fn listen_ports(config: &Config) -> Vec<u16> {
    let inbound = config
        .inbound
        .iter()
        .flat_map(|i| [i.listen.port(), i.upstream.port()]);
    let outbound = config.outbound.iter().flat_map(|o| {
        let local = o.tcp.values().map(|d| d.local.port());
        o.listen.map(|l| l.port()).into_iter().chain(local)
    });
    inbound
        .chain(outbound)
        .chain([config.admin_listen.port()])
        .collect()
}

/// The `certs issue … --spiffe-id ID --out DIR` lines of the mint script, `$OUT` expanded to
/// its default.
fn minted(script: &str) -> BTreeMap<PathBuf, SpiffeId> {
    assert!(
        script.contains(&format!("OUT=\"${{CERTS_DIR:-{CERTS_MOUNT}}}\"")),
        "CERTS_DIR default"
    );
    let lines: Vec<&str> = script
        .lines()
        .filter(|l| l.contains(" certs issue "))
        .collect();
    let minted: BTreeMap<PathBuf, SpiffeId> = lines
        .iter()
        .map(|line| {
            let words: Vec<&str> = line
                .split_whitespace()
                .map(|w| w.trim_matches('"'))
                .collect();
            let flag = |name| words[words.iter().position(|w| *w == name).unwrap() + 1];
            let out = flag("--out").replace("$OUT", CERTS_MOUNT);
            (
                PathBuf::from(out),
                SpiffeId::parse(flag("--spiffe-id")).unwrap(),
            )
        })
        .collect();
    assert_eq!(minted.len(), lines.len(), "one --out folder per SVID");
    minted
}

// --- the mint script, run for real ----------------------------------------------------------

/// What deploy/mint-certs.sh wrote, run with the built binary into temporary folders.
pub(crate) struct Minted {
    /// `CA_DIR`: the CAs.
    pub(crate) ca: TempDir,
    /// `CERTS_DIR`: what the `certs` volume holds.
    pub(crate) certs: TempDir,
}

impl Minted {
    /// Runs the script once.
    pub(crate) fn new() -> Minted {
        let minted = Minted {
            ca: TempDir::new().unwrap(),
            certs: TempDir::new().unwrap(),
        };
        minted.run();
        minted
    }

    /// Runs the script (again): as `docker compose run --rm certs` does.
    pub(crate) fn run(&self) {
        let out = Command::new("sh")
            .arg(root("deploy/mint-certs.sh"))
            .env("SEGWARD", env!("CARGO_BIN_EXE_segward"))
            .env("CA_DIR", self.ca.path())
            .env("CERTS_DIR", self.certs.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "deploy/mint-certs.sh: {}\n{stderr}",
            out.status
        );
    }

    /// A path inside the container's `/certs`, here.
    pub(crate) fn path(&self, inside: &Path) -> PathBuf {
        self.certs
            .path()
            .join(inside.strip_prefix(CERTS_MOUNT).unwrap())
    }

    /// The sidecar's credentials, loaded as `segward run` loads them.
    pub(crate) fn credentials(&self, sidecar: &Sidecar) -> Credentials {
        let identity = sidecar.config.identity.files().unwrap();
        let bundles: Vec<(TrustDomain, PathBuf)> = identity
            .bundles
            .iter()
            .map(|(td, path)| (td.clone(), self.path(path)))
            .collect();
        let (cert, key) = (self.path(&identity.cert), self.path(&identity.key));
        Credentials::load(&cert, &key, &bundles, SystemTime::now())
            .unwrap_or_else(|e| panic!("{}: {e}", sidecar.service))
    }
}

/// A path in the repository.
pub(crate) fn root(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

/// A file's text; panics naming the file.
pub(crate) fn text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
