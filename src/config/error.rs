//! `ConfigError`: why a sidecar config cannot be used, naming the file and either line:col
//! or the key path of the bad value (docs/cli.md: exit 1 with a message naming the file).

use crate::identity::SpiffeIdError;
use crate::signing::KeyError;

use super::AuthorityError;

/// Why a config file cannot be used. Each variant names the file, and either line:col or
/// the key path of the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `limits:` or `decision_log:` value out of range or not a duration.
    #[error("{file}: {key}: `{value}` {problem}")]
    BadLimit {
        /// The config file.
        file: String,
        /// e.g. `limits.idle_timeout`.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong, with the accepted range or form.
        problem: String,
    },
    /// An environment variable the config leaves in charge holds a bad value (today only
    /// `TOKIO_WORKER_THREADS`, when `limits.worker_threads` is not set).
    #[error("{file}: limits.worker_threads is not set, so {variable} decides: {value:?} {problem}")]
    BadEnv {
        /// The config file.
        file: String,
        /// The variable's name.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong, with the accepted range.
        problem: String,
    },
    /// The file cannot be opened or read, or is not UTF-8.
    #[error("{file}: cannot read: {message}")]
    Io {
        /// The config file.
        file: String,
        /// The operating system's words.
        message: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`](super::MAX_FILE_BYTES).
    #[error("{file}: file is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// The config file.
        file: String,
        /// Its size (or the bytes read before giving up).
        size: u64,
        /// [`MAX_FILE_BYTES`](super::MAX_FILE_BYTES).
        limit: u64,
    },
    /// docs/configuration.md: "Unknown keys are errors"; also YAML syntax, missing keys, wrong
    /// types and bad `mode` values.
    #[error("{}: {message}", at(file, *line, *col))]
    Yaml {
        /// The config file.
        file: String,
        /// 1-based line; 0 when unknown.
        line: u64,
        /// 1-based column; 0 when unknown.
        col: u64,
        /// The parser's message.
        message: String,
    },
    /// A `listen` value must be a literal `IP:port`; names are not resolved.
    #[error(
        "{file}: {key}: `{value}` is not an IP:port address; write e.g. 127.0.0.1:9901 or [::1]:9901"
    )]
    BadListen {
        /// The config file.
        file: String,
        /// e.g. `inbound.listen`.
        key: String,
        /// The value as written.
        value: String,
    },
    /// `upstream` and destination `address` values are `host:port`.
    #[error("{file}: {key}: `{value}` {problem}")]
    BadAuthority {
        /// The config file.
        file: String,
        /// e.g. `inbound.upstream`.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        problem: AuthorityError,
    },
    /// Keys of `identity.bundles` are trust domain names.
    #[error("{file}: {key}: `{value}` is not a trust domain: {problem}")]
    BadTrustDomain {
        /// The config file.
        file: String,
        /// e.g. `identity.bundles.Example.org`.
        key: String,
        /// The key as written.
        value: String,
        /// The SPIFFE rule it breaks.
        problem: SpiffeIdError,
    },
    /// A destination's `spiffe_id` must be a valid SPIFFE ID.
    #[error("{file}: {key}: `{value}`: {problem}")]
    BadSpiffeId {
        /// The config file.
        file: String,
        /// e.g. `outbound.destinations.payments.spiffe_id`.
        key: String,
        /// The value as written.
        value: String,
        /// The SPIFFE rule it breaks.
        problem: SpiffeIdError,
    },
    /// "the server must prove this ID": a bare trust domain would accept any workload in it.
    #[error(
        "{file}: {key}: `{value}` names a whole trust domain; name the workload, \
         e.g. {value}/ns/prod/sa/payments"
    )]
    SpiffeIdWithoutPath {
        /// The config file.
        file: String,
        /// e.g. `outbound.destinations.payments.spiffe_id`.
        key: String,
        /// The value as written.
        value: String,
    },
    /// Destination names are matched against a request's authority host, so they must be
    /// DNS-like.
    #[error(
        "{file}: {key}: `{name}` is not a host name; use letters, digits, `-` and `.`, \
         as a client would write it in `Host:`"
    )]
    BadDestinationName {
        /// The config file.
        file: String,
        /// e.g. `outbound.destinations.pay_ments`.
        key: String,
        /// The name as written.
        name: String,
    },
    /// Host names are case-insensitive, so two names differing only in case are one.
    #[error(
        "{file}: {key}: `{name}` and `{first}` are the same destination (host names ignore case)"
    )]
    DuplicateDestination {
        /// The config file.
        file: String,
        /// e.g. `outbound.destinations.Payments`.
        key: String,
        /// The later spelling.
        name: String,
        /// The earlier spelling.
        first: String,
    },
    /// A sidecar with neither side configured would do nothing.
    #[error("{file}: none of `inbound`, `outbound` or `ext_authz` is configured; add at least one")]
    NoListener {
        /// The config file.
        file: String,
    },
    /// Two listeners cannot share an address: the second bind would fail, or (`0.0.0.0`
    /// beside `127.0.0.1` on one port) one would shadow the other.
    #[error("{file}: {key}: {addr} is already used by {first}; give each listener its own port")]
    ListenConflict {
        /// The config file.
        file: String,
        /// The later key, e.g. `inbound[1].listen`.
        key: String,
        /// Its address.
        addr: std::net::SocketAddr,
        /// The key that took the port first.
        first: String,
    },
    /// docs/l4.md: "one local port per TCP destination": the app connects to `local`.
    #[error(
        "{file}: {key}: a `protocol: tcp` destination needs `local:`, the IP:port the app connects to (e.g. local: 127.0.0.1:5432)"
    )]
    TcpWithoutLocal {
        /// The config file.
        file: String,
        /// e.g. `outbound.destinations.ledger-db`.
        key: String,
    },
    /// `local:` belongs to TCP destinations; an HTTP destination is reached through
    /// `outbound.listen` by its name.
    #[error(
        "{file}: {key}: `local` is only for `protocol: tcp` destinations; HTTP destinations are reached through outbound.listen"
    )]
    LocalOnHttp {
        /// The config file.
        file: String,
        /// e.g. `outbound.destinations.payments.local`.
        key: String,
    },
    /// HTTP destinations are reached through `outbound.listen`, which is missing.
    #[error(
        "{file}: outbound.listen: required because {key} is an HTTP destination (e.g. listen: 127.0.0.1:15001)"
    )]
    HttpWithoutListen {
        /// The config file.
        file: String,
        /// The first HTTP destination, e.g. `outbound.destinations.payments`.
        key: String,
    },
    /// Without a trust bundle no peer can be verified.
    #[error(
        "{file}: identity.bundles: no trust bundle; add one, e.g. `example.org: certs/bundle.pem`"
    )]
    NoBundles {
        /// The config file.
        file: String,
    },
    /// docs/spire.md: the identity comes from files or from the Workload API, never both.
    #[error(
        "{file}: {files} and {workload_api} both name an identity source; keep the files \
         (cert, key, bundles) or the SPIFFE Workload API, not both"
    )]
    TwoIdentitySources {
        /// The config file.
        file: String,
        /// The first file key given, e.g. `identity.cert`.
        files: &'static str,
        /// `identity.workload_api` or `SPIFFE_ENDPOINT_SOCKET`.
        workload_api: &'static str,
    },
    /// No identity source at all.
    #[error(
        "{file}: identity: no identity source; give cert, key and bundles, or \
         workload_api: unix:///path/to/agent.sock (or set SPIFFE_ENDPOINT_SOCKET)"
    )]
    NoIdentity {
        /// The config file.
        file: String,
    },
    /// Files named in part: the certificate without its key, or the other way round.
    #[error("{file}: {key}: missing; file-based identity needs cert, key and bundles")]
    MissingIdentityFile {
        /// The config file.
        file: String,
        /// `identity.cert` or `identity.key`.
        key: &'static str,
    },
    /// The Workload API socket URI does not follow the SPIFFE Workload Endpoint rules.
    #[error("{file}: {key}: `{value}` {problem}")]
    BadWorkloadApi {
        /// The config file.
        file: String,
        /// `identity.workload_api` or `SPIFFE_ENDPOINT_SOCKET`.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong, with the accepted forms.
        problem: String,
    },
    /// docs/fleet.md#signed-policy: `policy_verify.keys` lists at least one key (an empty
    /// list would refuse every policy).
    #[error(
        "{file}: policy_verify.keys: empty; list the public key(s) the policy is signed with, \
         or remove policy_verify"
    )]
    NoVerifyKeys {
        /// The config file.
        file: String,
    },
    /// A `policy_verify.keys` entry is not a readable Ed25519 public key.
    #[error("{file}: {key}: {path}: {problem}")]
    BadVerifyKey {
        /// The config file.
        file: String,
        /// e.g. `policy_verify.keys[1]`.
        key: String,
        /// The key file, resolved.
        path: String,
        /// Why it is not a key.
        problem: KeyError,
    },
    /// `ext_authz.listen` (docs/envoy.md) is a loopback `IP:port` or `unix://PATH`: the
    /// Check service speaks plain-text gRPC, for an Envoy beside the sidecar only.
    #[error("{file}: ext_authz.listen: `{value}` {problem}")]
    BadExtAuthzListen {
        /// The config file.
        file: String,
        /// The value as written.
        value: String,
        /// What is wrong, with the accepted forms.
        problem: &'static str,
    },
    /// An empty path would silently mean the config file's folder.
    #[error("{file}: {key}: empty path")]
    EmptyPath {
        /// The config file.
        file: String,
        /// e.g. `identity.cert`.
        key: String,
    },
}

impl ConfigError {
    /// Short, bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::TooLarge { .. } => "too-large",
            Self::Yaml { .. } => "yaml",
            Self::BadListen { .. } => "bad-listen",
            Self::BadAuthority { .. } => "bad-authority",
            Self::BadTrustDomain { .. } => "bad-trust-domain",
            Self::BadSpiffeId { .. } => "bad-spiffe-id",
            Self::SpiffeIdWithoutPath { .. } => "spiffe-id-without-path",
            Self::BadDestinationName { .. } => "bad-destination-name",
            Self::DuplicateDestination { .. } => "duplicate-destination",
            Self::NoListener { .. } => "no-listener",
            Self::ListenConflict { .. } => "listen-conflict",
            Self::TcpWithoutLocal { .. } => "tcp-without-local",
            Self::LocalOnHttp { .. } => "local-on-http",
            Self::HttpWithoutListen { .. } => "http-without-listen",
            Self::NoBundles { .. } => "no-bundles",
            Self::EmptyPath { .. } => "empty-path",
            Self::TwoIdentitySources { .. } => "two-identity-sources",
            Self::NoIdentity { .. } => "no-identity",
            Self::MissingIdentityFile { .. } => "missing-identity-file",
            Self::BadWorkloadApi { .. } => "bad-workload-api",
            Self::BadLimit { .. } => "bad-limit",
            Self::BadEnv { .. } => "bad-env",
            Self::NoVerifyKeys { .. } => "no-verify-keys",
            Self::BadVerifyKey { .. } => "bad-verify-key",
            Self::BadExtAuthzListen { .. } => "bad-ext-authz-listen",
        }
    }
}

/// `file:line:col`, or just `file` when the position is unknown.
fn at(file: &str, line: u64, col: u64) -> String {
    match (line, col) {
        (0, _) => file.to_owned(),
        (_, 0) => format!("{file}:{line}"),
        _ => format!("{file}:{line}:{col}"),
    }
}
