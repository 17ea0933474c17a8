//! docs/l4.md's config: `inbound` as a map or a list of listeners with `protocol`,
//! `protocol: tcp` destinations with their `local:` port, and the errors that name the key:
//! conflicting listen addresses, a TCP destination without `local`, `local` on HTTP.

use std::fs;

use crate::config::*;

const HEAD: &str = "\
identity:
  cert: svid.pem
  key: svid.key
  bundles:
    example.org: bundle.pem
policy: policy.yaml
";

fn load(body: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segward.yaml");
    fs::write(&path, format!("{HEAD}{body}")).unwrap();
    Config::load(&path).map_err(|e| with_file_name(e, &path))
}

/// Errors carry the temp file's path; tests compare the rest.
fn with_file_name(err: ConfigError, path: &std::path::Path) -> ConfigError {
    let shown = err
        .to_string()
        .replace(&path.display().to_string(), "segward.yaml");
    assert!(shown.starts_with("segward.yaml"), "{shown}");
    err
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn the_section_11_example_parses_into_two_listeners_and_a_tcp_destination() {
    let config = load(
        "\
inbound:                      # a map as before, or a list of listeners
  - { listen: 0.0.0.0:8443, upstream: 127.0.0.1:8080 }                  # protocol: http (default)
  - { listen: 0.0.0.0:15432, upstream: 127.0.0.1:5432, protocol: tcp }
outbound:
  listen: 127.0.0.1:15001
  destinations:
    ledger-db:
      address: ledger-db.internal:15432
      spiffe_id: spiffe://example.org/ns/prod/sa/ledger-db
      protocol: tcp
      local: 127.0.0.1:5432     # the app connects here; one local port per TCP destination
",
    )
    .unwrap();
    let listeners: Vec<_> = config
        .inbound
        .iter()
        .map(|l| (l.listen, l.upstream.to_string(), l.protocol))
        .collect();
    assert_eq!(
        listeners,
        [
            (
                addr("0.0.0.0:8443"),
                "127.0.0.1:8080".to_owned(),
                Protocol::Http
            ),
            (
                addr("0.0.0.0:15432"),
                "127.0.0.1:5432".to_owned(),
                Protocol::Tcp
            ),
        ]
    );
    let outbound = config.outbound.unwrap();
    assert!(
        outbound.destinations.is_empty(),
        "a TCP destination is not an HTTP route"
    );
    let db = &outbound.tcp["ledger-db"];
    assert_eq!(db.local, addr("127.0.0.1:5432"));
    assert_eq!(db.address.to_string(), "ledger-db.internal:15432");
    assert_eq!(
        db.spiffe_id.as_str(),
        "spiffe://example.org/ns/prod/sa/ledger-db"
    );
}

#[test]
fn outbound_with_only_tcp_destinations_needs_no_http_listener() {
    let config = load(
        "\
outbound:
  destinations:
    Ledger-DB: { address: db:15432, spiffe_id: spiffe://example.org/db, protocol: tcp, local: 127.0.0.1:5432 }
",
    )
    .unwrap();
    let outbound = config.outbound.unwrap();
    assert_eq!(outbound.listen, None);
    assert!(
        outbound.tcp.contains_key("ledger-db"),
        "names are stored lower case"
    );
}

#[test]
fn an_http_destination_without_outbound_listen_is_an_error() {
    let err = load(
        "\
outbound:
  destinations:
    payments: { address: p:8443, spiffe_id: spiffe://example.org/p }
",
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::HttpWithoutListen { key, .. } if key == "outbound.destinations.payments"),
        "{err}"
    );
}

#[test]
fn a_tcp_destination_without_local_names_its_key() {
    let err = load(
        "\
outbound:
  listen: 127.0.0.1:15001
  destinations:
    ledger-db: { address: db:15432, spiffe_id: spiffe://example.org/db, protocol: tcp }
",
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::TcpWithoutLocal { key, .. } if key == "outbound.destinations.ledger-db"),
        "{err}"
    );
    assert!(err.to_string().contains("needs `local:`"), "{err}");
}

#[test]
fn local_on_an_http_destination_names_its_key() {
    let err = load(
        "\
outbound:
  listen: 127.0.0.1:15001
  destinations:
    payments: { address: p:8443, spiffe_id: spiffe://example.org/p, local: 127.0.0.1:9000 }
",
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::LocalOnHttp { key, .. } if key == "outbound.destinations.payments.local"),
        "{err}"
    );
}

#[test]
fn duplicate_and_overlapping_listen_addresses_name_both_keys() {
    let cases = [
        (
            "inbound:\n  - { listen: 127.0.0.1:8443, upstream: a:1 }\n  - { listen: 127.0.0.1:8443, upstream: b:2, protocol: tcp }\n",
            "inbound[1].listen",
            "inbound[0].listen",
        ),
        (
            "inbound:\n  - { listen: 0.0.0.0:8443, upstream: a:1 }\n  - { listen: 127.0.0.1:8443, upstream: b:2 }\n",
            "inbound[1].listen",
            "inbound[0].listen",
        ),
        (
            "inbound: { listen: 127.0.0.1:9901, upstream: a:1 }\n",
            "admin.listen",
            "inbound.listen",
        ),
        (
            "outbound:\n  listen: 127.0.0.1:15001\n  destinations:\n    db: { address: db:1, spiffe_id: spiffe://example.org/db, protocol: tcp, local: 127.0.0.1:15001 }\n",
            "outbound.destinations.db.local",
            "outbound.listen",
        ),
        (
            "inbound: [{ listen: \"[::]:5432\", upstream: a:1, protocol: tcp }]\noutbound:\n  destinations:\n    db: { address: db:1, spiffe_id: spiffe://example.org/db, protocol: tcp, local: 127.0.0.1:5432 }\n",
            "outbound.destinations.db.local",
            "inbound.listen",
        ),
    ];
    for (body, later, earlier) in cases {
        let err = load(body).unwrap_err();
        match &err {
            ConfigError::ListenConflict { key, first, .. } => {
                assert_eq!((key.as_str(), first.as_str()), (later, earlier), "{body}");
            }
            other => panic!("{body}: {other}"),
        }
    }
    // Port 0 lets the OS choose: never a conflict (tests start many sidecars that way).
    load("inbound:\n  - { listen: 127.0.0.1:0, upstream: a:1 }\n  - { listen: 127.0.0.1:0, upstream: b:2, protocol: tcp }\nadmin: { listen: 127.0.0.1:0 }\n").unwrap();
}

#[test]
fn bad_values_in_a_listener_list_name_their_index() {
    let err = load("inbound:\n  - { listen: 127.0.0.1:1, upstream: a:1 }\n  - { listen: nowhere, upstream: b:2 }\n")
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::BadListen { key, .. } if key == "inbound[1].listen"),
        "{err}"
    );
    let err =
        load("inbound:\n  - { listen: 127.0.0.1:1, upstream: a:1, protocol: udp }\n").unwrap_err();
    assert!(matches!(err, ConfigError::Yaml { line: 8, .. }), "{err}");
    let err = load("inbound:\n  - { listen: 127.0.0.1:1, upstream: a:1, extra: 1 }\n").unwrap_err();
    assert!(err.to_string().contains("extra"), "{err}");
    let err = load("inbound: 7\n").unwrap_err();
    assert!(err.to_string().contains("a list of them"), "{err}");
}
