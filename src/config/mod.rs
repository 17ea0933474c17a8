//! The sidecar configuration file (docs/configuration.md): [`RawConfig`] mirrors the YAML under
//! `deny_unknown_fields`, and [`Config::from_raw`] is the only way to build a [`Config`]: it
//! resolves paths against the config file's folder and parses addresses and IDs, so runtime
//! code never sees a string it would still have to check ("Parse, don't validate").

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::signing::PolicyKeys;

/// A config file larger than this is refused; a real one is a few hundred bytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The admin listener when the config has no `admin` section (docs/security.md: "Admin listens
/// on loopback by default").
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// The file name used in messages when [`Config::from_raw`] is called without a file.
const NO_FILE: &str = "<config>";

// ---------------------------------------------------------------------------------------------
// Raw: the YAML, 1:1
// ---------------------------------------------------------------------------------------------

/// The YAML of docs/configuration.md, key for key, with one addition: `tls12: true` allows TLS 1.2
/// next to 1.3 (docs/security.md: "TLS 1.3 by default (1.2 may be enabled in config)").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The sidecar's own SVID and the trust bundles it accepts: files, or the Workload API
    /// (absent: `SPIFFE_ENDPOINT_SOCKET` must name the Workload API).
    #[serde(default)]
    pub identity: RawIdentity,
    /// A policy file or a folder of `*.yaml` files.
    pub policy: PathBuf,
    /// mTLS in, plain (HTTP or TCP) to the local workload: one listener or a list.
    #[serde(default)]
    pub inbound: Option<RawInbounds>,
    /// Plain in from the local app, mTLS out.
    #[serde(default)]
    pub outbound: Option<RawOutbound>,
    /// The admin listener; `127.0.0.1:9901` when absent.
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// `enforce` (default) or `audit`.
    #[serde(default)]
    pub mode: Mode,
    /// Allow TLS 1.2 as well as 1.3; off by default.
    #[serde(default)]
    pub tls12: bool,
    /// Connection, header, handshake, upstream and drain limits; defaults when absent.
    #[serde(default)]
    pub limits: RawLimits,
    /// Sampling of allowed requests in the decision log; all logged when absent.
    #[serde(default)]
    pub decision_log: RawDecisionLog,
    /// The public keys the policy must be signed by one of; unsigned policy is taken when
    /// absent.
    #[serde(default)]
    pub policy_verify: Option<RawPolicyVerify>,
    /// Probe detection (docs/probes.md); off when `detect.probe` is absent.
    #[serde(default)]
    pub detect: RawDetect,
    /// The Envoy `ext_authz` Check service (docs/envoy.md); off when absent.
    #[serde(default)]
    pub ext_authz: Option<RawExtAuthz>,
}

/// One `inbound:` listener — where to listen for mTLS and where the local workload is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInbound {
    /// `IP:port` to accept mTLS on.
    pub listen: String,
    /// `host:port` of the local workload.
    pub upstream: String,
    /// `http` (default) or `tcp`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// `admin:` — the admin listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `IP:port` of the admin endpoints.
    pub listen: String,
}

/// `mode:` — whether denials are enforced or only logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denied requests get 403.
    #[default]
    Enforce,
    /// Denied requests are forwarded and logged as `WouldDeny`.
    Audit,
}

// ---------------------------------------------------------------------------------------------
// Resolved
// ---------------------------------------------------------------------------------------------

/// A configuration every part of which has been parsed; built only by [`Config::from_raw`]
/// or [`Config::load`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Certificate, key and bundles (paths resolved), or the Workload API endpoint.
    pub identity: IdentitySource,
    /// The policy file or folder, resolved.
    pub policy: PathBuf,
    /// The inbound listeners, in the order written (empty: no inbound side).
    pub inbound: Vec<Inbound>,
    /// The outbound side, if configured.
    pub outbound: Option<Outbound>,
    /// Where the admin endpoints listen.
    pub admin_listen: SocketAddr,
    /// Enforce or audit.
    pub mode: Mode,
    /// Whether TLS 1.2 is allowed next to 1.3.
    pub tls12: bool,
    /// Connection, header, handshake, upstream and drain limits (`limits:`).
    pub limits: Limits,
    /// How many allowed requests the decision log writes (`decision_log:`).
    pub decision_log: DecisionLogSettings,
    /// How file changes are noticed (defaults; not in the YAML yet).
    pub reload: ReloadTiming,
    /// The keys a policy must be signed by one of (`policy_verify`), read at load.
    pub policy_verify: Option<PolicyKeys>,
    /// Probe detection (`detect.probe`); `None`: off.
    pub probe: Option<ProbeSettings>,
    /// The Envoy `ext_authz` Check service, if configured (docs/envoy.md).
    pub ext_authz: Option<ExtAuthz>,
    /// Legal but noteworthy settings; private so that only `from_raw` builds a `Config`.
    warnings: Vec<ConfigWarning>,
}

/// How the sidecar notices changed policy, certificate, key and bundle files (docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadTiming {
    /// Watch the folders for file events (off only in tests of the other triggers).
    pub watch_files: bool,
    /// File events closer together than this make one reload.
    pub debounce: Duration,
    /// The periodic re-check for file systems where events get lost.
    pub poll: Duration,
}

impl Default for ReloadTiming {
    fn default() -> Self {
        Self {
            watch_files: true,
            debounce: Duration::from_millis(200),
            poll: Duration::from_secs(10),
        }
    }
}

/// One inbound listener: mTLS in, plain to the local workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Where to accept mTLS.
    pub listen: SocketAddr,
    /// The local workload.
    pub upstream: Authority,
    /// HTTP (per request) or TCP (per connection).
    pub protocol: Protocol,
}

/// A legal setting an operator should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// docs/security.md: "Admin listens on loopback by default"; this config moves it off.
    AdminNotLoopback(SocketAddr),
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AdminNotLoopback(addr) => write!(
                f,
                "admin.listen: {addr} is not a loopback address; the admin endpoints \
                 will be reachable from the network"
            ),
        }
    }
}

impl Config {
    /// Reads, parses and resolves the config file at `path`; relative paths in it resolve
    /// against its folder.
    ///
    /// # Errors
    /// A file that cannot be read or is over [`MAX_FILE_BYTES`], YAML errors (syntax, unknown
    /// keys, wrong types) at file:line:col, and every [`Config::from_raw`] error.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = read_capped(path, &file)?;
        let raw = parse_yaml(&file, &text)?;
        let base_dir = path.parent().unwrap_or(Path::new(""));
        resolve(raw, base_dir, &file)
    }

    /// Parses every value of `raw`; relative paths are joined to `base_dir`.
    ///
    /// # Errors
    /// The first value that does not parse, named by its key path; a config with neither
    /// `inbound` nor `outbound`, or without trust bundles.
    pub fn from_raw(raw: RawConfig, base_dir: &Path) -> Result<Self, ConfigError> {
        resolve(raw, base_dir, NO_FILE)
    }

    /// Legal but noteworthy settings, for the caller to log at `warn`.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }
}

/// Parses YAML text into a [`RawConfig`]; `file` names it in errors.
///
/// # Errors
/// [`ConfigError::Yaml`] at file:line:col.
pub fn parse_yaml(file: &str, text: &str) -> Result<RawConfig, ConfigError> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<RawConfig>(text, options).map_err(|e| {
        let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = e.without_snippet().to_string();
        // The parser appends its own "at line X, column Y"; the prefix already says it.
        let message = match message.rfind(" at line ") {
            Some(i) if line > 0 => message[..i].to_owned(),
            _ => message,
        };
        ConfigError::Yaml {
            file: file.to_owned(),
            line,
            col,
            message,
        }
    })
}

fn read_capped(path: &Path, file: &str) -> Result<String, ConfigError> {
    let io_err = |e: std::io::Error| ConfigError::Io {
        file: file.to_owned(),
        message: e.to_string(),
    };
    let too_large = |size: u64| ConfigError::TooLarge {
        file: file.to_owned(),
        size,
        limit: MAX_FILE_BYTES,
    };
    let handle = File::open(path).map_err(io_err)?;
    let len = handle.metadata().map_err(io_err)?.len();
    if len > MAX_FILE_BYTES {
        return Err(too_large(len));
    }
    // The length can change or lie (a FIFO, /dev/zero): read at most one byte past the cap.
    let mut text = String::new();
    handle
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

fn resolve(raw: RawConfig, base_dir: &Path, file: &str) -> Result<Config, ConfigError> {
    // The one value the environment supplies; read here so that runtime code obeys a
    // resolved count and never looks at the environment itself.
    let threads_env = std::env::var(THREADS_ENV).ok();
    let endpoint_env = std::env::var(ENDPOINT_ENV).ok();
    resolve_with_env(raw, base_dir, file, threads_env, endpoint_env)
}

/// [`resolve`] with the environment's values passed in (tests set them without touching the
/// process environment).
fn resolve_with_env(
    raw: RawConfig,
    base_dir: &Path,
    file: &str,
    threads_env: Option<String>,
    endpoint_env: Option<String>,
) -> Result<Config, ConfigError> {
    let identity =
        identity::resolve_identity(raw.identity, endpoint_env.as_deref(), base_dir, file)?;
    let policy = resolve_path(&raw.policy, base_dir, "policy", file)?;

    let inbound = match raw.inbound {
        None => Vec::new(),
        Some(r) => listeners::resolve_inbounds(r, file)?,
    };

    let outbound = match raw.outbound {
        None => None,
        Some(r) => Some(resolve_outbound(r, file)?),
    };

    let ext_authz = match raw.ext_authz {
        None => None,
        Some(r) => Some(resolve_ext_authz(r, base_dir, file)?),
    };

    let no_outbound = outbound
        .as_ref()
        .is_none_or(|o| o.listen.is_none() && o.tcp.is_empty());
    if inbound.is_empty() && no_outbound && ext_authz.is_none() {
        return Err(ConfigError::NoListener {
            file: file.to_owned(),
        });
    }

    let admin_listen = match raw.admin {
        None => DEFAULT_ADMIN_LISTEN,
        Some(a) => parse_listen(&a.listen, "admin.listen", file)?,
    };
    let mut keys = listen_keys(&inbound, outbound.as_ref(), admin_listen);
    if let Some(ExtAuthz {
        listen: ExtAuthzListen::Tcp(addr),
    }) = &ext_authz
    {
        keys.push(("ext_authz.listen".to_owned(), *addr));
    }
    listeners::check_conflicts(&keys, file)?;
    let mut warnings = Vec::new();
    if !admin_listen.ip().is_loopback() {
        warnings.push(ConfigWarning::AdminNotLoopback(admin_listen));
    }

    Ok(Config {
        identity,
        policy,
        inbound,
        outbound,
        admin_listen,
        mode: raw.mode,
        tls12: raw.tls12,
        limits: resolve_limits(&raw.limits, file, threads_env.as_deref())?,
        decision_log: resolve_decision_log(&raw.decision_log, file)?,
        reload: ReloadTiming::default(),
        policy_verify: resolve_policy_verify(raw.policy_verify, base_dir, file)?,
        probe: resolve_detect(&raw.detect, file)?,
        ext_authz,
        warnings,
    })
}

/// Every listening address with the key that set it, in config order (the first key to take
/// an address is named in a conflict).
fn listen_keys(
    inbound: &[Inbound],
    outbound: Option<&Outbound>,
    admin: SocketAddr,
) -> Vec<(String, SocketAddr)> {
    let mut keys: Vec<(String, SocketAddr)> = inbound
        .iter()
        .enumerate()
        .map(|(i, l)| match inbound.len() {
            1 => ("inbound.listen".to_owned(), l.listen),
            _ => (format!("inbound[{i}].listen"), l.listen),
        })
        .collect();
    if let Some(outbound) = outbound {
        keys.extend(outbound.listen.map(|a| ("outbound.listen".to_owned(), a)));
        keys.extend(
            outbound
                .tcp
                .iter()
                .map(|(name, d)| (format!("outbound.destinations.{name}.local"), d.local)),
        );
    }
    keys.push(("admin.listen".to_owned(), admin));
    keys
}

fn resolve_path(
    path: &Path,
    base_dir: &Path,
    key: &str,
    file: &str,
) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::EmptyPath {
            file: file.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    })
}

fn parse_listen(value: &str, key: &str, file: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse::<SocketAddr>()
        .map_err(|_| ConfigError::BadListen {
            file: file.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        })
}

mod authority;
mod detect;
mod error;
mod ext_authz;
mod identity;
mod limits;
mod listeners;
mod outbound;
mod policy_verify;

pub use authority::{Authority, AuthorityError};
pub use detect::{ProbeAction, ProbeSettings, RawDetect, RawProbe, resolve_detect};
pub use error::ConfigError;
use ext_authz::resolve_ext_authz;
pub use ext_authz::{ExtAuthz, ExtAuthzListen, RawExtAuthz};
pub use identity::{
    Backoff, ENDPOINT_ENV, Identity, IdentitySource, RawIdentity, WorkloadApi, WorkloadEndpoint,
};
pub use limits::{
    DecisionLogSettings, Limits, MAX_LOOPS, RawDecisionLog, RawLimits, THREADS_ENV, parse_duration,
    resolve_decision_log, resolve_limits,
};
pub use listeners::{Protocol, RawInbounds};
use outbound::resolve_outbound;
pub use outbound::{
    Destination, Outbound, RawDestination, RawOutbound, TcpDestination, destination_key,
};
pub use policy_verify::RawPolicyVerify;
use policy_verify::resolve_policy_verify;

#[cfg(test)]
mod tests;
