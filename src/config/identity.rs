//! `identity:` (docs/configuration.md, §12): where the sidecar's X509-SVID and trust bundles come
//! from — PEM files (`cert`, `key`, `bundles`), or the SPIFFE Workload API of a SPIRE agent
//! (`workload_api: unix:///…`, or the `SPIFFE_ENDPOINT_SOCKET` environment variable when the
//! section names no source). Exactly one source: giving both is an error, never a guess.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, resolve_path};
use crate::identity::TrustDomain;

/// The environment variable of the SPIFFE Workload Endpoint specification: the socket of
/// the Workload API when the config does not name one.
pub const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// `identity:` as written; which keys are set decides the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// PEM: the leaf and its intermediates.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM: the leaf's private key.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Trust domain → CA bundle; several mean federation.
    #[serde(default)]
    pub bundles: Option<BTreeMap<String, PathBuf>>,
    /// The SPIFFE Workload API socket: `unix:///path` or `tcp://IP:port`.
    #[serde(default)]
    pub workload_api: Option<String>,
}

/// Where the SVID and the bundles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// PEM files, watched and reloaded (docs/operations.md).
    Files(Identity),
    /// Streamed from the SPIFFE Workload API (docs/spire.md).
    WorkloadApi(WorkloadApi),
}

impl IdentitySource {
    /// The files, when the identity comes from files.
    pub fn files(&self) -> Option<&Identity> {
        match self {
            Self::Files(files) => Some(files),
            Self::WorkloadApi(_) => None,
        }
    }

    /// The Workload API settings, when the identity comes from it.
    pub fn workload_api(&self) -> Option<&WorkloadApi> {
        match self {
            Self::Files(_) => None,
            Self::WorkloadApi(api) => Some(api),
        }
    }
}

/// The sidecar's credential and trust bundle files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Trust domain → CA bundle file; never empty.
    pub bundles: BTreeMap<TrustDomain, PathBuf>,
}

/// The Workload API source: the agent's endpoint and how reconnects back off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadApi {
    /// The agent's socket.
    pub endpoint: WorkloadEndpoint,
    /// Which setting named it: `identity.workload_api` or `SPIFFE_ENDPOINT_SOCKET`.
    pub named_by: &'static str,
    /// Reconnect delays (defaults; not in the YAML).
    pub backoff: Backoff,
}

/// Capped exponential backoff between Workload API connection attempts: `initial`, doubled
/// after each failure up to `max`, back to `initial` once a stream has delivered an SVID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The cap.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        // go-spiffe's client starts at 1 s with a 30 s cap; a sidecar waiting for its first
        // SVID wants it sooner, so start lower and reach the same cap.
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// A SPIFFE Workload API address (SPIFFE Workload Endpoint §4): a Unix domain socket
/// (`unix:///abs/path`) or a TCP address given as an IP and a port (`tcp://127.0.0.1:8081`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkloadEndpoint {
    /// `unix:` — an absolute socket path.
    Unix(PathBuf),
    /// `tcp:` — an IP address and port; names are not resolved.
    Tcp(SocketAddr),
}

impl fmt::Display for WorkloadEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl WorkloadEndpoint {
    /// Parses an endpoint URI under the Workload Endpoint rules: scheme `unix` with an
    /// absolute path and no host, or scheme `tcp` with `IP:port` and nothing else; no user
    /// info, query or fragment in either.
    ///
    /// # Errors
    /// What is wrong, with the accepted forms.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.contains(['?', '#']) {
            return Err("has a query or fragment; the socket URI takes neither".to_owned());
        }
        if let Some(rest) = value.strip_prefix("unix:") {
            // `unix:///p` (empty authority) and `unix:/p` name the same path.
            let path = match rest.strip_prefix("//") {
                Some(after) if after.starts_with('/') => after,
                Some(_) => {
                    return Err(
                        "names a host; a unix socket URI is unix:///absolute/path".to_owned()
                    );
                }
                None => rest,
            };
            if !path.starts_with('/') {
                return Err("is not an absolute path; write unix:///absolute/path".to_owned());
            }
            if path.len() == 1 || path.ends_with('/') {
                return Err("names a folder, not a socket".to_owned());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = value.strip_prefix("tcp://") {
            if rest.contains('@') {
                return Err("has user info; a tcp socket URI is tcp://IP:port".to_owned());
            }
            return rest.parse().map(Self::Tcp).map_err(|_| {
                "is not tcp://IP:port (an IP address, not a name, and a port)".to_owned()
            });
        }
        Err("is not a unix:///path or tcp://IP:port URI".to_owned())
    }
}

/// Resolves `identity:` with `env` standing for the value of [`ENDPOINT_ENV`].
pub(super) fn resolve_identity(
    raw: RawIdentity,
    env: Option<&str>,
    base_dir: &Path,
    file: &str,
) -> Result<IdentitySource, ConfigError> {
    let files_named = [
        raw.cert.as_ref().map(|_| "identity.cert"),
        raw.key.as_ref().map(|_| "identity.key"),
        raw.bundles.as_ref().map(|_| "identity.bundles"),
    ];
    let first_file_key = files_named.into_iter().flatten().next();
    let env = env.filter(|value| !value.is_empty());
    let api = match (raw.workload_api.as_deref(), first_file_key, env) {
        (Some(_), Some(key), _) => {
            return Err(ConfigError::TwoIdentitySources {
                file: file.to_owned(),
                files: key,
                workload_api: "identity.workload_api",
            });
        }
        // The config's own key wins over the environment (go-spiffe's rule).
        (Some(value), None, _) => Some(("identity.workload_api", value)),
        (None, Some(key), Some(_)) => {
            return Err(ConfigError::TwoIdentitySources {
                file: file.to_owned(),
                files: key,
                workload_api: ENDPOINT_ENV,
            });
        }
        (None, Some(_), None) => None,
        (None, None, Some(value)) => Some((ENDPOINT_ENV, value)),
        (None, None, None) => {
            return Err(ConfigError::NoIdentity {
                file: file.to_owned(),
            });
        }
    };
    if let Some((named_by, value)) = api {
        let endpoint =
            WorkloadEndpoint::parse(value).map_err(|problem| ConfigError::BadWorkloadApi {
                file: file.to_owned(),
                key: named_by,
                value: value.to_owned(),
                problem,
            })?;
        return Ok(IdentitySource::WorkloadApi(WorkloadApi {
            endpoint,
            named_by,
            backoff: Backoff::default(),
        }));
    }
    resolve_files(raw, base_dir, file).map(IdentitySource::Files)
}

fn resolve_files(raw: RawIdentity, base_dir: &Path, file: &str) -> Result<Identity, ConfigError> {
    let missing = |key: &'static str| ConfigError::MissingIdentityFile {
        file: file.to_owned(),
        key,
    };
    let cert = raw.cert.ok_or_else(|| missing("identity.cert"))?;
    let key = raw.key.ok_or_else(|| missing("identity.key"))?;
    let cert = resolve_path(&cert, base_dir, "identity.cert", file)?;
    let key = resolve_path(&key, base_dir, "identity.key", file)?;
    let raw_bundles = raw.bundles.unwrap_or_default();
    if raw_bundles.is_empty() {
        return Err(ConfigError::NoBundles {
            file: file.to_owned(),
        });
    }
    let mut bundles = BTreeMap::new();
    for (name, path) in &raw_bundles {
        let key_path = format!("identity.bundles.{name}");
        let td = TrustDomain::parse(name).map_err(|problem| ConfigError::BadTrustDomain {
            file: file.to_owned(),
            key: key_path.clone(),
            value: name.clone(),
            problem,
        })?;
        let path = resolve_path(path, base_dir, &key_path, file)?;
        bundles.insert(td, path);
    }
    Ok(Identity { cert, key, bundles })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_uris_follow_the_workload_endpoint_rules() {
        let unix = |p: &str| Ok(WorkloadEndpoint::Unix(PathBuf::from(p)));
        assert_eq!(
            WorkloadEndpoint::parse("unix:///run/spire/agent.sock"),
            unix("/run/spire/agent.sock")
        );
        assert_eq!(
            WorkloadEndpoint::parse("unix:/tmp/a.sock"),
            unix("/tmp/a.sock")
        );
        assert_eq!(
            WorkloadEndpoint::parse("tcp://127.0.0.1:8081"),
            Ok(WorkloadEndpoint::Tcp("127.0.0.1:8081".parse().unwrap()))
        );
        assert_eq!(
            WorkloadEndpoint::parse("tcp://[::1]:8081"),
            Ok(WorkloadEndpoint::Tcp("[::1]:8081".parse().unwrap()))
        );
        for bad in [
            "",
            "/run/spire/agent.sock",
            "unix://host/agent.sock",
            "unix:relative.sock",
            "unix:///",
            "unix:///run/spire/",
            "unix:///a.sock?x=1",
            "unix:///a.sock#f",
            "tcp://localhost:8081",
            "tcp://127.0.0.1",
            "tcp://u@127.0.0.1:1",
            "tcp://127.0.0.1:1/path",
            "http://127.0.0.1:1",
            "npipe:foo",
        ] {
            assert!(WorkloadEndpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn endpoints_print_as_uris() {
        for uri in ["unix:///run/spire/agent.sock", "tcp://127.0.0.1:8081"] {
            assert_eq!(WorkloadEndpoint::parse(uri).unwrap().to_string(), uri);
        }
    }
}
