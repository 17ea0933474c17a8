//! `outbound:` (docs/configuration.md, §11): the raw YAML of the outbound side, its resolved form —
//! HTTP destinations matched by authority host, TCP destinations by their `local:` port — and
//! the resolution that names the key of every problem.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::authority::is_destination_name;
use super::{Authority, ConfigError, Protocol, parse_listen};
use crate::identity::SpiffeId;

/// `outbound:` — where the local app sends plain requests, and where they may go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    /// `IP:port` to accept plain HTTP on; needed only when there are HTTP destinations.
    #[serde(default)]
    pub listen: Option<String>,
    /// Name (matched against the request's authority host) → destination.
    #[serde(default)]
    pub destinations: BTreeMap<String, RawDestination>,
}

/// One entry of `outbound.destinations`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    /// `host:port` to connect to.
    pub address: String,
    /// The SPIFFE ID the server must prove.
    pub spiffe_id: String,
    /// `http` (default) or `tcp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// TCP only: the `IP:port` the local app connects to for this destination.
    #[serde(default)]
    pub local: Option<String>,
}

/// Plain in from the local app, mTLS out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Where to accept plain HTTP; `None` when there are only TCP destinations.
    pub listen: Option<SocketAddr>,
    /// Lower-case name → HTTP destination (reached through `listen`).
    pub destinations: BTreeMap<String, Destination>,
    /// Lower-case name → TCP destination (each reached through its own `local`).
    pub tcp: BTreeMap<String, TcpDestination>,
}

impl Outbound {
    /// The destination a request's authority host names, compared case-insensitively
    /// (docs/configuration.md: "matched against the request's authority host"). `None` means deny.
    pub fn destination(&self, host: &str) -> Option<&Destination> {
        self.destinations.get(destination_key(host).as_ref())
    }
}

/// The key a request's host is looked up under among the destinations: destination names
/// compare case-insensitively, and are stored lower case (allocates only for upper case).
pub fn destination_key(host: &str) -> std::borrow::Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Where an outbound request for one name goes, and whom the server must prove to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Where to connect.
    pub address: Authority,
    /// The SPIFFE ID the server's certificate must carry; always has a path.
    pub spiffe_id: SpiffeId,
}

/// Where the app's connections to one `local:` port go (docs/l4.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpDestination {
    /// Where the app connects, plain.
    pub local: SocketAddr,
    /// Where to connect with mTLS.
    pub address: Authority,
    /// The SPIFFE ID the server's certificate must carry; always has a path.
    pub spiffe_id: SpiffeId,
}

/// Resolves `outbound:`: the plain listener, and each destination by its protocol.
pub(super) fn resolve_outbound(raw: RawOutbound, file: &str) -> Result<Outbound, ConfigError> {
    let listen = match &raw.listen {
        None => None,
        Some(listen) => Some(parse_listen(listen, "outbound.listen", file)?),
    };
    let mut destinations: BTreeMap<String, Destination> = BTreeMap::new();
    let mut tcp: BTreeMap<String, TcpDestination> = BTreeMap::new();
    let mut spelled: BTreeMap<String, String> = BTreeMap::new();
    for (name, dest) in raw.destinations {
        let prefix = format!("outbound.destinations.{name}");
        let lower = checked_name(&name, &prefix, &spelled, file)?;
        match resolve_destination(dest, &prefix, listen.is_some(), file)? {
            Resolved::Http(d) => destinations.insert(lower.clone(), d).map(drop),
            Resolved::Tcp(d) => tcp.insert(lower.clone(), d).map(drop),
        };
        spelled.insert(lower, name);
    }
    Ok(Outbound {
        listen,
        destinations,
        tcp,
    })
}

/// A destination resolved for its protocol.
enum Resolved {
    Http(Destination),
    Tcp(TcpDestination),
}

/// `name` as a legal destination name not already used in another spelling; lower case.
fn checked_name(
    name: &str,
    prefix: &str,
    spelled: &BTreeMap<String, String>,
    file: &str,
) -> Result<String, ConfigError> {
    if !is_destination_name(name) {
        return Err(ConfigError::BadDestinationName {
            file: file.to_owned(),
            key: prefix.to_owned(),
            name: name.to_owned(),
        });
    }
    let lower = name.to_ascii_lowercase();
    if let Some(first) = spelled.get(&lower) {
        return Err(ConfigError::DuplicateDestination {
            file: file.to_owned(),
            key: prefix.to_owned(),
            name: name.to_owned(),
            first: first.clone(),
        });
    }
    Ok(lower)
}

/// One destination: its address, the ID its server must prove, and its protocol's own key
/// (`local` for TCP; HTTP needs the outbound listener).
fn resolve_destination(
    dest: RawDestination,
    prefix: &str,
    has_listen: bool,
    file: &str,
) -> Result<Resolved, ConfigError> {
    let address = Authority::parse(&dest.address).map_err(|problem| ConfigError::BadAuthority {
        file: file.to_owned(),
        key: format!("{prefix}.address"),
        value: dest.address.clone(),
        problem,
    })?;
    let spiffe_id = server_id(&dest.spiffe_id, &format!("{prefix}.spiffe_id"), file)?;
    let error_file = || file.to_owned();
    match (dest.protocol, &dest.local) {
        (Protocol::Http, None) if has_listen => {
            Ok(Resolved::Http(Destination { address, spiffe_id }))
        }
        (Protocol::Http, None) => Err(ConfigError::HttpWithoutListen {
            file: error_file(),
            key: prefix.to_owned(),
        }),
        (Protocol::Http, Some(_)) => Err(ConfigError::LocalOnHttp {
            file: error_file(),
            key: format!("{prefix}.local"),
        }),
        (Protocol::Tcp, None) => Err(ConfigError::TcpWithoutLocal {
            file: error_file(),
            key: prefix.to_owned(),
        }),
        (Protocol::Tcp, Some(local)) => Ok(Resolved::Tcp(TcpDestination {
            local: parse_listen(local, &format!("{prefix}.local"), file)?,
            address,
            spiffe_id,
        })),
    }
}

/// The SPIFFE ID a destination's server must prove: valid, and naming a workload (a path).
fn server_id(value: &str, key: &str, file: &str) -> Result<SpiffeId, ConfigError> {
    let id = SpiffeId::parse(value).map_err(|problem| ConfigError::BadSpiffeId {
        file: file.to_owned(),
        key: key.to_owned(),
        value: value.to_owned(),
        problem,
    })?;
    if id.path().is_empty() {
        return Err(ConfigError::SpiffeIdWithoutPath {
            file: file.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(id)
}
