//! Sidecars started the way `segward run` starts them: a YAML config (docs/configuration.md) written
//! beside the test PKI, read with `Config::load`, started with `app::Sidecar::start` on
//! 127.0.0.1:0. A `tune` hook adjusts the parsed config (limits) before start.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use segward::app::Sidecar;
use segward::config::Config;

use super::pki::{Pki, SvidFiles};

static FILES: AtomicUsize = AtomicUsize::new(0);

fn unique(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}-{}", FILES.fetch_add(1, Ordering::Relaxed)))
}

/// Writes `text` as the only file of a new policy folder; returns the folder.
pub fn write_policy(pki: &Pki, text: &str) -> PathBuf {
    let dir = unique(pki.dir(), "policy");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("policy.yaml"), text).unwrap();
    dir
}

/// A config for `svid` trusting the bundles of `trust_domains`, with `policy` and the
/// `listeners` YAML (an `inbound:` and/or `outbound:` block, plus `mode:`, `limits:` or
/// `admin:` if wanted; without `admin:` the admin listener takes an ephemeral port).
pub fn write_config(
    pki: &Pki,
    svid: &SvidFiles,
    trust_domains: &[&str],
    policy: &Path,
    listeners: &str,
) -> PathBuf {
    let mut yaml = format!(
        "identity:\n  cert: {}\n  key: {}\n  bundles:\n",
        svid.cert.display(),
        svid.key.display()
    );
    for td in trust_domains {
        writeln!(yaml, "    {td}: {}", pki.bundle_path(td).display()).unwrap();
    }
    writeln!(yaml, "policy: {}\n{listeners}", policy.display()).unwrap();
    if !listeners.contains("admin:") {
        // Many sidecars run in one test process: never the fixed default port.
        yaml.push_str("admin:\n  listen: 127.0.0.1:0\n");
    }
    let file = unique(pki.dir(), "segward").with_extension("yaml");
    fs::write(&file, yaml).unwrap();
    file
}

/// The `inbound:` block for a workload at `upstream`.
pub fn inbound_block(upstream: SocketAddr) -> String {
    format!("inbound:\n  listen: 127.0.0.1:0\n  upstream: {upstream}\n")
}

/// An `inbound:` list with one `protocol: tcp` listener on `listen` in front of `upstream`
/// (docs/l4.md).
pub fn tcp_inbound_block(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!("inbound:\n  - {{ listen: {listen}, upstream: {upstream}, protocol: tcp }}\n")
}

/// An `outbound:` block with the one `protocol: tcp` destination `ledger-db` at `address`,
/// proving `spiffe_id`, reached by the app on `local`.
pub fn tcp_outbound_block(address: SocketAddr, spiffe_id: &str, local: SocketAddr) -> String {
    format!(
        "outbound:\n  destinations:\n    ledger-db:\n      address: {address}\n      \
         spiffe_id: {spiffe_id}\n      protocol: tcp\n      local: {local}\n"
    )
}

/// `127.0.0.1:0`: a port the OS picks at bind.
pub const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The `outbound:` block routing each `(name, address, spiffe_id)`.
pub fn outbound_block(destinations: &[(&str, SocketAddr, &str)]) -> String {
    let mut yaml = String::from("outbound:\n  listen: 127.0.0.1:0\n  destinations:\n");
    for (name, address, spiffe_id) in destinations {
        writeln!(
            yaml,
            "    {name}:\n      address: {address}\n      spiffe_id: {spiffe_id}"
        )
        .unwrap();
    }
    yaml
}

/// Loads `config_file` and starts a sidecar from it, after `tune` adjusted the config.
pub async fn start(config_file: &Path, tune: impl FnOnce(&mut Config)) -> Sidecar {
    let mut config = Config::load(config_file).unwrap();
    tune(&mut config);
    Sidecar::start(&config).await.unwrap()
}
