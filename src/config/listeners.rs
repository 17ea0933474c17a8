//! The listeners of a config (docs/configuration.md, §11): `inbound:` as one map or a list of
//! listeners, each `protocol: http | tcp`, and the rule that no two listeners — inbound,
//! `outbound.listen`, a TCP destination's `local`, `admin.listen` — share an address.

use std::fmt;
use std::net::SocketAddr;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{Authority, ConfigError, Inbound, RawInbound, parse_listen};

/// What a listener or destination carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2: every request decided with its method and path.
    #[default]
    Http,
    /// Bytes: one decision per connection, re-decided on every policy change.
    Tcp,
}

impl Protocol {
    /// The config's and the metrics' word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
        }
    }
}

/// `inbound:` as written: one listener map (the original form) or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawInbounds {
    /// The listeners, in the order written.
    pub listeners: Vec<RawInbound>,
    /// Written as a list: keys are named `inbound[i].…`, else `inbound.…`.
    pub list: bool,
}

impl<'de> Deserialize<'de> for RawInbounds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = RawInbounds;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a listener (listen, upstream, protocol) or a list of them")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawInbounds, A::Error> {
                let one = RawInbound::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawInbounds {
                    listeners: vec![one],
                    list: false,
                })
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawInbounds, A::Error> {
                let many = Vec::<RawInbound>::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(RawInbounds {
                    listeners: many,
                    list: true,
                })
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

/// Parses each inbound listener; keys in errors as the operator wrote them.
pub(super) fn resolve_inbounds(raw: RawInbounds, file: &str) -> Result<Vec<Inbound>, ConfigError> {
    let mut inbound = Vec::with_capacity(raw.listeners.len());
    for (i, r) in raw.listeners.into_iter().enumerate() {
        let prefix = if raw.list {
            format!("inbound[{i}]")
        } else {
            "inbound".to_owned()
        };
        let listen = parse_listen(&r.listen, &format!("{prefix}.listen"), file)?;
        let upstream =
            Authority::parse(&r.upstream).map_err(|problem| ConfigError::BadAuthority {
                file: file.to_owned(),
                key: format!("{prefix}.upstream"),
                value: r.upstream.clone(),
                problem,
            })?;
        inbound.push(Inbound {
            listen,
            upstream,
            protocol: r.protocol,
        });
    }
    Ok(inbound)
}

/// Refuses two listeners on one address: the same IP and port, or one port where either
/// side is the unspecified address (`0.0.0.0`, `::`), which takes the port on every IP.
/// Port 0 (the OS picks a free port) never conflicts.
pub(super) fn check_conflicts(
    listeners: &[(String, SocketAddr)],
    file: &str,
) -> Result<(), ConfigError> {
    for (i, (key, addr)) in listeners.iter().enumerate() {
        let taken = listeners[..i]
            .iter()
            .find(|(_, earlier)| conflicts(*earlier, *addr));
        if let Some((first, _)) = taken {
            return Err(ConfigError::ListenConflict {
                file: file.to_owned(),
                key: key.clone(),
                addr: *addr,
                first: first.clone(),
            });
        }
    }
    Ok(())
}

fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_port_conflicts_on_one_ip_and_with_the_unspecified_address_only() {
        assert!(conflicts(at("127.0.0.1:8443"), at("127.0.0.1:8443")));
        assert!(conflicts(at("0.0.0.0:8443"), at("127.0.0.1:8443")));
        assert!(conflicts(at("127.0.0.1:8443"), at("[::]:8443")));
        assert!(!conflicts(at("127.0.0.1:8443"), at("127.0.0.2:8443")));
        assert!(!conflicts(at("127.0.0.1:8443"), at("127.0.0.1:8444")));
        assert!(!conflicts(at("127.0.0.1:0"), at("127.0.0.1:0")));
    }
}
