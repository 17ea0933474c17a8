//! docs/configuration.md (sidecar configuration) and §4 (TLS 1.2 opt-in, admin on loopback).
//! Steps checked:
//!   §2.a the example YAML parses;
//!   §2.b relative paths resolve against the config file's folder;
//!   §2.c unknown keys are errors (at file:line:col);
//!   §2.d destinations are matched against the request's authority host;
//!   §4.a TLS 1.3 by default, 1.2 only when enabled;
//!   §4.b admin listens on loopback by default.

// Config sections with many cases of their own, as child files of these tests.
mod identity;
mod policy_verify;
mod tcp;

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::identity::{SpiffeIdError, TrustDomain};

/// docs/configuration.md's example, verbatim.
const EXAMPLE: &str = "\
identity:
  cert: certs/payments/svid.pem       # leaf + intermediates
  key:  certs/payments/svid.key
  bundles:                            # trust domain -> CA bundle (several = federation)
    example.org: certs/bundle.pem
policy: policies/                     # a file or a directory of *.yaml; hot-reloaded
inbound:                              # optional: mTLS in, plain to the local workload
  listen: 0.0.0.0:8443
  upstream: 127.0.0.1:8080
outbound:                             # optional: plain in from the local app, mTLS out
  listen: 127.0.0.1:15001
  destinations:
    payments:                         # matched against the request's authority host
      address: payments.internal:8443
      spiffe_id: spiffe://example.org/ns/prod/sa/payments   # the server must prove this ID
admin:
  listen: 127.0.0.1:9901
mode: enforce                         # enforce | audit
";

/// The smallest valid config: one bundle, inbound only, no admin, mode or tls12.
const MINIMAL: &str = "\
identity:
  cert: svid.pem
  key: svid.key
  bundles:
    example.org: bundle.pem
policy: policy.yaml
inbound:
  listen: 127.0.0.1:8443
  upstream: localhost:8080
";

/// Writes `text` as `segward.yaml` in a fresh folder and loads it.
fn load_text(text: &str) -> (tempfile::TempDir, PathBuf, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segward.yaml");
    fs::write(&path, text).unwrap();
    let result = Config::load(&path);
    (dir, path, result)
}

fn load_ok(text: &str) -> Config {
    let (_dir, _path, result) = load_text(text);
    result.unwrap()
}

#[test]
fn the_product_example_parses_and_resolves_paths_against_the_files_folder() {
    let (dir, _path, result) = load_text(EXAMPLE);
    let config = result.unwrap(); // §2.a
    let base = dir.path();
    // §2.b
    assert_eq!(
        config.identity.files().unwrap().cert,
        base.join("certs/payments/svid.pem")
    );
    assert_eq!(
        config.identity.files().unwrap().key,
        base.join("certs/payments/svid.key")
    );
    let td = TrustDomain::parse("example.org").unwrap();
    assert_eq!(
        config.identity.files().unwrap().bundles.get(&td),
        Some(&base.join("certs/bundle.pem"))
    );
    assert_eq!(config.policy, base.join("policies/"));

    let [inbound] = config.inbound.as_slice() else {
        panic!("one inbound listener: {:?}", config.inbound)
    };
    assert_eq!(inbound.protocol, Protocol::Http);
    assert_eq!(
        inbound.listen,
        "0.0.0.0:8443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(inbound.upstream.host(), "127.0.0.1");
    assert_eq!(inbound.upstream.port(), 8080);

    let outbound = config.outbound.as_ref().unwrap();
    assert_eq!(
        outbound.listen,
        Some("127.0.0.1:15001".parse::<SocketAddr>().unwrap())
    );
    let payments = outbound.destination("payments").unwrap();
    assert_eq!(payments.address.to_string(), "payments.internal:8443");
    assert_eq!(
        payments.spiffe_id.as_str(),
        "spiffe://example.org/ns/prod/sa/payments"
    );
    // §2.d host names ignore case; an unknown destination is not found.
    assert_eq!(outbound.destination("PayMents"), Some(payments));
    assert_eq!(outbound.destination("billing"), None);

    assert_eq!(config.admin_listen, DEFAULT_ADMIN_LISTEN);
    assert_eq!(config.mode, Mode::Enforce);
    assert!(!config.tls12); // §4.a
    assert!(config.warnings().is_empty());
}

#[test]
fn absolute_paths_are_kept_as_written() {
    let text = MINIMAL.replace("cert: svid.pem", "cert: /etc/segward/svid.pem");
    let config = load_ok(&text);
    assert_eq!(
        config.identity.files().unwrap().cert,
        Path::new("/etc/segward/svid.pem")
    );
}

#[test]
fn from_raw_resolves_against_the_given_folder() {
    let raw = parse_yaml("x.yaml", MINIMAL).unwrap();
    let config = Config::from_raw(raw, Path::new("/srv/app")).unwrap();
    assert_eq!(config.policy, Path::new("/srv/app/policy.yaml"));
}

#[test]
fn omitted_settings_take_their_defaults() {
    let config = load_ok(MINIMAL);
    assert_eq!(config.mode, Mode::Enforce);
    assert_eq!(config.admin_listen, DEFAULT_ADMIN_LISTEN); // §4.b
    assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9901");
    assert!(!config.tls12); // §4.a
    assert!(config.outbound.is_none());
    assert!(config.warnings().is_empty());
}

#[test]
fn explicit_settings_override_the_defaults() {
    let text = format!("{MINIMAL}mode: audit\ntls12: true\nadmin:\n  listen: '[::1]:9000'\n");
    let config = load_ok(&text);
    assert_eq!(config.mode, Mode::Audit);
    assert!(config.tls12); // §4.a
    assert_eq!(config.admin_listen.to_string(), "[::1]:9000");
    assert!(config.warnings().is_empty());
}

#[test]
fn a_non_loopback_admin_listener_is_allowed_but_warned_about() {
    let text = format!("{MINIMAL}admin:\n  listen: 0.0.0.0:9901\n");
    let config = load_ok(&text);
    let addr: SocketAddr = "0.0.0.0:9901".parse().unwrap();
    assert_eq!(config.admin_listen, addr);
    assert_eq!(config.warnings(), &[ConfigWarning::AdminNotLoopback(addr)]); // §4.b
    assert!(config.warnings()[0].to_string().contains("not a loopback"));
}

#[test]
fn outbound_only_is_enough() {
    let text = MINIMAL.replace(
        "inbound:\n  listen: 127.0.0.1:8443\n  upstream: localhost:8080\n",
        "outbound:\n  listen: 127.0.0.1:15001\n  destinations:\n    Payments.Internal:\n      \
         address: '[fd00::1]:8443'\n      spiffe_id: spiffe://example.org/payments\n",
    );
    let config = load_ok(&text);
    let outbound = config.outbound.unwrap();
    let names: Vec<_> = outbound.destinations.keys().collect();
    assert_eq!(names, ["payments.internal"]);
    let dest = outbound.destination("payments.internal").unwrap();
    assert_eq!(dest.address.host(), "fd00::1");
    assert_eq!(dest.address.to_string(), "[fd00::1]:8443");
}

/// One row per YAML-level rule: the error is at line:col of the offending key or value.
#[test]
fn yaml_errors_name_the_file_line_and_column() {
    // (what, text, line, col, message fragment)
    let rows: &[(&str, String, u64, u64, &str)] = &[
        (
            "§2.c unknown top-level key",
            format!("{MINIMAL}colour: blue\n"),
            10,
            1,
            "unknown field `colour`",
        ),
        (
            "§2.c unknown key in identity",
            MINIMAL.replace("  key: svid.key\n", "  key: svid.key\n  ca: x.pem\n"),
            4,
            3,
            "unknown field `ca`",
        ),
        (
            "§2.c unknown key in inbound (typo)",
            MINIMAL.replace("  listen: 127.0.0.1:8443", "  lsten: 127.0.0.1:8443"),
            8,
            3,
            "unknown field `lsten`, expected",
        ),
        (
            "§2.c unknown key in a destination",
            format!(
                "{MINIMAL}outbound:\n  listen: 127.0.0.1:1\n  destinations:\n    a:\n      \
                 address: a:1\n      spiffe_id: spiffe://example.org/a\n      port: 1\n"
            ),
            16,
            7,
            "unknown field `port`",
        ),
        (
            "§2.c unknown key in admin",
            format!("{MINIMAL}admin:\n  listen: 127.0.0.1:1\n  tls: true\n"),
            12,
            3,
            "unknown field `tls`",
        ),
        (
            "mode is enforce or audit",
            format!("{MINIMAL}mode: permissive\n"),
            10,
            7,
            "permissive",
        ),
        (
            "tls12 is a boolean",
            format!("{MINIMAL}tls12: maybe\n"),
            10,
            8,
            "",
        ),
    ];
    for (what, text, line, col, fragment) in rows {
        let (_dir, path, result) = load_text(text);
        let err = result.unwrap_err();
        let ConfigError::Yaml {
            file,
            line: l,
            col: c,
            message,
        } = &err
        else {
            panic!("{what}: expected a YAML error, got {err:?}");
        };
        assert_eq!(file, &path.display().to_string(), "{what}");
        assert_eq!((*l, *c), (*line, *col), "{what}: {message}");
        assert!(message.contains(fragment), "{what}: {message}");
        assert_eq!(err.reason(), "yaml", "{what}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{}:{line}:{col}: ", path.display())),
            "{what}: {shown}"
        );
        assert!(!shown.contains(" at line "), "{what}: {shown}");
    }
}

/// One row per resolution rule: the error names the file and the key path.
#[test]
fn resolution_errors_name_the_key_and_the_problem() {
    let outbound = |name: &str, address: &str, id: &str| {
        MINIMAL.replace(
            "inbound:\n  listen: 127.0.0.1:8443\n  upstream: localhost:8080\n",
            &format!(
                "outbound:\n  listen: 127.0.0.1:15001\n  destinations:\n    {name}:\n      \
                 address: '{address}'\n      spiffe_id: '{id}'\n"
            ),
        )
    };
    let f = "F".to_owned();
    let s = |v: &str| v.to_owned();
    let rows: Vec<(&str, String, ConfigError)> = vec![
        (
            "listen must be IP:port",
            MINIMAL.replace("listen: 127.0.0.1:8443", "listen: localhost:8443"),
            ConfigError::BadListen {
                file: f.clone(),
                key: s("inbound.listen"),
                value: s("localhost:8443"),
            },
        ),
        (
            "listen needs a port",
            MINIMAL.replace("listen: 127.0.0.1:8443", "listen: 127.0.0.1"),
            ConfigError::BadListen {
                file: f.clone(),
                key: s("inbound.listen"),
                value: s("127.0.0.1"),
            },
        ),
        (
            "admin listen must be IP:port",
            format!("{MINIMAL}admin:\n  listen: ':9901'\n"),
            ConfigError::BadListen {
                file: f.clone(),
                key: s("admin.listen"),
                value: s(":9901"),
            },
        ),
        (
            "upstream needs a port",
            MINIMAL.replace("upstream: localhost:8080", "upstream: localhost"),
            ConfigError::BadAuthority {
                file: f.clone(),
                key: s("inbound.upstream"),
                value: s("localhost"),
                problem: AuthorityError::MissingPort,
            },
        ),
        (
            "upstream is not a URL",
            MINIMAL.replace(
                "upstream: localhost:8080",
                "upstream: http://localhost:8080",
            ),
            ConfigError::BadAuthority {
                file: f.clone(),
                key: s("inbound.upstream"),
                value: s("http://localhost:8080"),
                problem: AuthorityError::Scheme,
            },
        ),
        (
            "trust domains are lower case",
            MINIMAL.replace("example.org: bundle.pem", "Example.org: bundle.pem"),
            ConfigError::BadTrustDomain {
                file: f.clone(),
                key: s("identity.bundles.Example.org"),
                value: s("Example.org"),
                problem: SpiffeIdError::UppercaseTrustDomain('E'),
            },
        ),
        (
            "at least one bundle",
            MINIMAL.replace(
                "  bundles:\n    example.org: bundle.pem\n",
                "  bundles: {}\n",
            ),
            ConfigError::NoBundles { file: f.clone() },
        ),
        (
            "paths are not empty",
            MINIMAL.replace("cert: svid.pem", "cert: ''"),
            ConfigError::EmptyPath {
                file: f.clone(),
                key: s("identity.cert"),
            },
        ),
        (
            "at least one of inbound and outbound",
            MINIMAL.replace(
                "inbound:\n  listen: 127.0.0.1:8443\n  upstream: localhost:8080\n",
                "",
            ),
            ConfigError::NoListener { file: f.clone() },
        ),
        (
            "destination spiffe_id must be a SPIFFE ID",
            outbound("payments", "p:1", "spiffe://example.org/a//b"),
            ConfigError::BadSpiffeId {
                file: f.clone(),
                key: s("outbound.destinations.payments.spiffe_id"),
                value: s("spiffe://example.org/a//b"),
                problem: SpiffeIdError::EmptySegment,
            },
        ),
        (
            "destination spiffe_id names a workload",
            outbound("payments", "p:1", "spiffe://example.org"),
            ConfigError::SpiffeIdWithoutPath {
                file: f.clone(),
                key: s("outbound.destinations.payments.spiffe_id"),
                value: s("spiffe://example.org"),
            },
        ),
        (
            "destination address needs a port",
            outbound("payments", "payments.internal", "spiffe://example.org/p"),
            ConfigError::BadAuthority {
                file: f.clone(),
                key: s("outbound.destinations.payments.address"),
                value: s("payments.internal"),
                problem: AuthorityError::MissingPort,
            },
        ),
        (
            "destination names are host names",
            outbound("pay_ments", "p:1", "spiffe://example.org/p"),
            ConfigError::BadDestinationName {
                file: f.clone(),
                key: s("outbound.destinations.pay_ments"),
                name: s("pay_ments"),
            },
        ),
        (
            "destination names differing only in case are duplicates",
            outbound("payments", "p:1", "spiffe://example.org/p").replace(
                "  destinations:\n",
                "  destinations:\n    Payments:\n      address: q:1\n      \
                 spiffe_id: spiffe://example.org/q\n",
            ),
            ConfigError::DuplicateDestination {
                file: f.clone(),
                key: s("outbound.destinations.payments"),
                name: s("payments"),
                first: s("Payments"),
            },
        ),
    ];
    for (what, text, expected) in rows {
        let (_dir, path, result) = load_text(&text);
        let file = path.display().to_string();
        let err = result.unwrap_err();
        assert_eq!(err, with_file(expected, &file), "{what}");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("{file}: ")), "{what}: {shown}");
    }
}

#[test]
fn error_messages_read_like_the_contract() {
    let (_dir, path, result) = load_text(&MINIMAL.replace(
        "inbound:\n  listen: 127.0.0.1:8443\n  upstream: localhost:8080\n",
        "outbound:\n  listen: 127.0.0.1:1\n  destinations:\n    payments:\n      \
         address: p:1\n      spiffe_id: spiffe://example.org\n",
    ));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "{}: outbound.destinations.payments.spiffe_id: `spiffe://example.org` names a \
             whole trust domain; name the workload, e.g. spiffe://example.org/ns/prod/sa/payments",
            path.display()
        )
    );
}

#[test]
fn from_raw_errors_name_a_placeholder_file() {
    let raw = parse_yaml(
        "x.yaml",
        &MINIMAL.replace("upstream: localhost:8080", "upstream: h"),
    )
    .unwrap();
    let err = Config::from_raw(raw, Path::new("/")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "<config>: inbound.upstream: `h` has no port; write host:port, e.g. 127.0.0.1:8080"
    );
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let err = Config::load(&path).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Io { file, .. } if *file == path.display().to_string()),
        "{err:?}"
    );
    assert_eq!(err.reason(), "io");
}

#[test]
fn a_file_over_the_cap_is_refused_unread() {
    let padding = "#".repeat(usize::try_from(MAX_FILE_BYTES).unwrap());
    let (_dir, path, result) = load_text(&format!("{MINIMAL}{padding}\n"));
    let size = fs::metadata(&path).unwrap().len();
    assert_eq!(
        result.unwrap_err(),
        ConfigError::TooLarge {
            file: path.display().to_string(),
            size,
            limit: MAX_FILE_BYTES,
        }
    );
}

#[test]
fn a_file_at_the_cap_is_read() {
    let padding = "#".repeat(usize::try_from(MAX_FILE_BYTES).unwrap() - MINIMAL.len());
    let text = format!("{MINIMAL}{padding}");
    assert_eq!(text.len() as u64, MAX_FILE_BYTES);
    load_ok(&text);
}

#[test]
fn authorities_are_host_and_port_only() {
    // (input, expected host:port or error)
    let rows: &[(&str, Result<&str, AuthorityError>)] = &[
        ("127.0.0.1:8080", Ok("127.0.0.1:8080")),
        ("Payments.Internal:8443", Ok("payments.internal:8443")),
        ("[::1]:80", Ok("[::1]:80")),
        ("", Err(AuthorityError::Empty)),
        ("localhost", Err(AuthorityError::MissingPort)),
        ("localhost:", Err(AuthorityError::MissingPort)),
        ("[::1]", Err(AuthorityError::MissingPort)),
        ("localhost:0", Err(AuthorityError::BadPort)),
        ("localhost:65536", Err(AuthorityError::BadPort)),
        ("localhost:+80", Err(AuthorityError::BadPort)),
        (":80", Err(AuthorityError::EmptyHost)),
        ("::1:80", Err(AuthorityError::BadHost)),
        ("[nope]:80", Err(AuthorityError::BadHost)),
        ("bad_host:80", Err(AuthorityError::BadHost)),
        ("https://a:1", Err(AuthorityError::Scheme)),
        ("a:1/x", Err(AuthorityError::Path)),
        ("u@a:1", Err(AuthorityError::Userinfo)),
    ];
    for (input, expected) in rows {
        let got = Authority::parse(input).map(|a| a.to_string());
        assert_eq!(got, expected.map(str::to_owned), "{input}");
    }
}

#[test]
fn every_error_has_a_distinct_reason() {
    let f = String::new;
    let errors = [
        ConfigError::Io {
            file: f(),
            message: f(),
        },
        ConfigError::TooLarge {
            file: f(),
            size: 0,
            limit: 0,
        },
        ConfigError::Yaml {
            file: f(),
            line: 0,
            col: 0,
            message: f(),
        },
        ConfigError::BadListen {
            file: f(),
            key: f(),
            value: f(),
        },
        ConfigError::BadAuthority {
            file: f(),
            key: f(),
            value: f(),
            problem: AuthorityError::Empty,
        },
        ConfigError::BadTrustDomain {
            file: f(),
            key: f(),
            value: f(),
            problem: SpiffeIdError::Empty,
        },
        ConfigError::BadSpiffeId {
            file: f(),
            key: f(),
            value: f(),
            problem: SpiffeIdError::Empty,
        },
        ConfigError::SpiffeIdWithoutPath {
            file: f(),
            key: f(),
            value: f(),
        },
        ConfigError::BadDestinationName {
            file: f(),
            key: f(),
            name: f(),
        },
        ConfigError::DuplicateDestination {
            file: f(),
            key: f(),
            name: f(),
            first: f(),
        },
        ConfigError::NoListener { file: f() },
        ConfigError::ListenConflict {
            file: f(),
            key: f(),
            addr: "127.0.0.1:1".parse().unwrap(),
            first: f(),
        },
        ConfigError::TcpWithoutLocal {
            file: f(),
            key: f(),
        },
        ConfigError::LocalOnHttp {
            file: f(),
            key: f(),
        },
        ConfigError::HttpWithoutListen {
            file: f(),
            key: f(),
        },
        ConfigError::NoBundles { file: f() },
        ConfigError::EmptyPath {
            file: f(),
            key: f(),
        },
        ConfigError::BadLimit {
            file: f(),
            key: f(),
            value: f(),
            problem: f(),
        },
        ConfigError::BadEnv {
            file: f(),
            variable: "V",
            value: f(),
            problem: f(),
        },
        ConfigError::TwoIdentitySources {
            file: f(),
            files: "k",
            workload_api: "k",
        },
        ConfigError::NoIdentity { file: f() },
        ConfigError::MissingIdentityFile {
            file: f(),
            key: "k",
        },
        ConfigError::BadWorkloadApi {
            file: f(),
            key: "k",
            value: f(),
            problem: f(),
        },
        ConfigError::NoVerifyKeys { file: f() },
        ConfigError::BadVerifyKey {
            file: f(),
            key: f(),
            path: f(),
            problem: crate::signing::KeyError::NotPublicKey,
        },
    ];
    let mut reasons: Vec<_> = errors.iter().map(ConfigError::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), errors.len());
}

/// The expected error of a table row, with the temp file's name filled in.
fn with_file(mut err: ConfigError, name: &str) -> ConfigError {
    let file = match &mut err {
        ConfigError::Io { file, .. }
        | ConfigError::TooLarge { file, .. }
        | ConfigError::Yaml { file, .. }
        | ConfigError::BadListen { file, .. }
        | ConfigError::BadAuthority { file, .. }
        | ConfigError::BadTrustDomain { file, .. }
        | ConfigError::BadSpiffeId { file, .. }
        | ConfigError::SpiffeIdWithoutPath { file, .. }
        | ConfigError::BadDestinationName { file, .. }
        | ConfigError::DuplicateDestination { file, .. }
        | ConfigError::NoListener { file }
        | ConfigError::ListenConflict { file, .. }
        | ConfigError::TcpWithoutLocal { file, .. }
        | ConfigError::LocalOnHttp { file, .. }
        | ConfigError::HttpWithoutListen { file, .. }
        | ConfigError::NoBundles { file }
        | ConfigError::EmptyPath { file, .. }
        | ConfigError::BadLimit { file, .. }
        | ConfigError::BadEnv { file, .. }
        | ConfigError::TwoIdentitySources { file, .. }
        | ConfigError::NoIdentity { file }
        | ConfigError::MissingIdentityFile { file, .. }
        | ConfigError::BadWorkloadApi { file, .. }
        | ConfigError::NoVerifyKeys { file }
        | ConfigError::BadVerifyKey { file, .. }
        | ConfigError::BadExtAuthzListen { file, .. } => file,
    };
    name.clone_into(file);
    err
}
