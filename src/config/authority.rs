//! `Authority`: the `host:port` of an upstream or an outbound destination (docs/configuration.md),
//! validated once when the config is read.

use std::fmt;
use std::net::Ipv6Addr;

/// A `host:port` to connect to: a DNS name, an IPv4 address or a bracketed IPv6 address,
/// and a port, nothing else (no scheme, no path, no userinfo). The host is stored lower case
/// and, for IPv6, without brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    host: String,
    port: u16,
}

/// Why a `host:port` value is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// The value is empty.
    #[error("is empty")]
    Empty,
    /// A URL was given where `host:port` belongs.
    #[error("has a scheme; write only host:port, e.g. 127.0.0.1:8080")]
    Scheme,
    /// A path, query or fragment was given where `host:port` belongs.
    #[error("has a path; write only host:port, e.g. 127.0.0.1:8080")]
    Path,
    /// `user@host` is not an address.
    #[error("has userinfo (`user@`); write only host:port")]
    Userinfo,
    /// The port is required: segward never guesses one.
    #[error("has no port; write host:port, e.g. 127.0.0.1:8080")]
    MissingPort,
    /// The port is not a number from 1 to 65535.
    #[error("has a bad port; ports are 1 to 65535")]
    BadPort,
    /// The host is empty.
    #[error("has an empty host")]
    EmptyHost,
    /// The host is neither a DNS name, an IPv4 address nor a bracketed IPv6 address.
    #[error("has a bad host; use a DNS name, an IPv4 address or [IPv6]")]
    BadHost,
}

impl Authority {
    /// Parses `host:port`.
    ///
    /// # Errors
    /// Why `input` is not a `host:port`.
    pub fn parse(input: &str) -> Result<Self, AuthorityError> {
        if input.is_empty() {
            return Err(AuthorityError::Empty);
        }
        if input.contains("://") {
            return Err(AuthorityError::Scheme);
        }
        if input.contains(['/', '?', '#']) {
            return Err(AuthorityError::Path);
        }
        if input.contains('@') {
            return Err(AuthorityError::Userinfo);
        }
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or(AuthorityError::BadHost)?;
            if v6.parse::<Ipv6Addr>().is_err() {
                return Err(AuthorityError::BadHost);
            }
            let port = after.strip_prefix(':').ok_or(if after.is_empty() {
                AuthorityError::MissingPort
            } else {
                AuthorityError::BadHost
            })?;
            (v6, port)
        } else {
            let (host, port) = input.rsplit_once(':').ok_or(AuthorityError::MissingPort)?;
            if host.contains(':') {
                // An IPv6 address without brackets: `::1:8080` is ambiguous.
                return Err(AuthorityError::BadHost);
            }
            if host.is_empty() {
                return Err(AuthorityError::EmptyHost);
            }
            if !is_destination_name(host) {
                return Err(AuthorityError::BadHost);
            }
            (host, port)
        };
        if port.is_empty() {
            return Err(AuthorityError::MissingPort);
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(AuthorityError::BadPort),
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The host, lower case; IPv6 without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, never 0.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// DNS-ish: dot-separated labels of ASCII letters, digits and `-`, each 1–63 bytes, not
/// starting or ending with `-`; at most 253 bytes in all.
pub(super) fn is_destination_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
