//! `ext_authz:` (docs/envoy.md): where the Envoy `ext_authz` Check service listens — a
//! loopback `IP:port` or `unix://PATH`. The service speaks plain-text gRPC and trusts the
//! `source.principal` Envoy sends, so it is for an Envoy beside the sidecar only: an address
//! off loopback is refused, not warned about.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `ext_authz:` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtAuthz {
    /// `127.0.0.1:9191` (loopback only) or `unix:///run/segward/ext_authz.sock`.
    pub listen: String,
}

/// Where the Check service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtAuthzListen {
    /// A loopback TCP address (port 0: the OS picks one).
    Tcp(SocketAddr),
    /// A Unix socket path, resolved against the config file's folder.
    Unix(PathBuf),
}

impl fmt::Display for ExtAuthzListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// The `ext_authz:` section of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtAuthz {
    /// Where the Check service listens.
    pub listen: ExtAuthzListen,
}

/// Parses `raw.listen`; relative socket paths join `base_dir`.
pub(super) fn resolve_ext_authz(
    raw: RawExtAuthz,
    base_dir: &Path,
    file: &str,
) -> Result<ExtAuthz, ConfigError> {
    let bad = |problem: &'static str| ConfigError::BadExtAuthzListen {
        file: file.to_owned(),
        value: raw.listen.clone(),
        problem,
    };
    let listen = if let Some(path) = raw.listen.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(bad(
                "names no socket path; write e.g. unix:///run/segward/ext_authz.sock",
            ));
        }
        if path.contains('\0') {
            return Err(bad("holds a NUL byte"));
        }
        let path = Path::new(path);
        ExtAuthzListen::Unix(if path.is_absolute() {
            path.to_owned()
        } else {
            base_dir.join(path)
        })
    } else {
        let addr: SocketAddr = raw.listen.parse().map_err(|_| {
            bad("is not a loopback IP:port or unix://PATH; write e.g. 127.0.0.1:9191")
        })?;
        if !addr.ip().is_loopback() {
            return Err(bad(
                "is not a loopback address; the Check service speaks plain-text gRPC and \
                 believes the principal it is sent, so only an Envoy beside the sidecar may \
                 reach it (use 127.0.0.1 or a unix:// socket)",
            ));
        }
        ExtAuthzListen::Tcp(addr)
    };
    Ok(ExtAuthz { listen })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(listen: &str) -> Result<ExtAuthzListen, ConfigError> {
        let raw = RawExtAuthz {
            listen: listen.to_owned(),
        };
        resolve_ext_authz(raw, Path::new("/etc/segward"), "c.yaml").map(|e| e.listen)
    }

    #[test]
    fn loopback_tcp_and_unix_sockets_are_accepted() {
        assert_eq!(
            parse("127.0.0.1:9191"),
            Ok(ExtAuthzListen::Tcp("127.0.0.1:9191".parse().unwrap()))
        );
        assert_eq!(
            parse("[::1]:9191"),
            Ok(ExtAuthzListen::Tcp("[::1]:9191".parse().unwrap()))
        );
        assert_eq!(
            parse("unix:///run/segward/ext_authz.sock"),
            Ok(ExtAuthzListen::Unix("/run/segward/ext_authz.sock".into()))
        );
        assert_eq!(
            parse("unix://ext_authz.sock"),
            Ok(ExtAuthzListen::Unix("/etc/segward/ext_authz.sock".into()))
        );
    }

    #[test]
    fn off_loopback_names_and_empty_paths_are_refused() {
        for bad in [
            "0.0.0.0:9191",
            "10.0.0.5:9191",
            "localhost:9191",
            "unix://",
            "9191",
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.reason(), "bad-ext-authz-listen", "{bad}");
            assert!(error.to_string().contains("ext_authz.listen"), "{error}");
        }
    }
}
