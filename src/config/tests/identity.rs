//! docs/spire.md: `identity:` names files or the SPIFFE Workload API (the config key, or
//! `SPIFFE_ENDPOINT_SOCKET` when the section names no source) — exactly one of them.

use std::path::{Path, PathBuf};

use crate::config::*;

const REST: &str = "\
policy: policy.yaml
inbound:
  listen: 127.0.0.1:8443
  upstream: localhost:8080
";

const FILES: &str = "\
identity:
  cert: svid.pem
  key: svid.key
  bundles:
    example.org: bundle.pem
";

/// Resolves `identity` (YAML, or nothing) plus a listener, with `env` as the value of
/// `SPIFFE_ENDPOINT_SOCKET`.
fn resolve_identity(identity: &str, env: Option<&str>) -> Result<IdentitySource, ConfigError> {
    let text = format!("{identity}{REST}");
    let raw = parse_yaml("segward.yaml", &text)?;
    let env = env.map(str::to_owned);
    resolve_with_env(raw, Path::new("/etc/segward"), "segward.yaml", None, env)
        .map(|config| config.identity)
}

fn api(uri: &str, named_by: &'static str) -> IdentitySource {
    IdentitySource::WorkloadApi(WorkloadApi {
        endpoint: WorkloadEndpoint::parse(uri).unwrap(),
        named_by,
        backoff: Backoff::default(),
    })
}

#[test]
fn the_workload_api_key_names_the_agent_socket() {
    let identity = "identity:\n  workload_api: unix:///run/spire/agent.sock\n";
    assert_eq!(
        resolve_identity(identity, None).unwrap(),
        api("unix:///run/spire/agent.sock", "identity.workload_api")
    );
    // The config's own key wins over the environment.
    assert_eq!(
        resolve_identity(identity, Some("unix:///elsewhere.sock")).unwrap(),
        api("unix:///run/spire/agent.sock", "identity.workload_api")
    );
}

#[test]
fn spiffe_endpoint_socket_is_the_source_when_the_section_names_none() {
    let expected = api("unix:///spiffe/agent.sock", ENDPOINT_ENV);
    for identity in ["", "identity: {}\n"] {
        assert_eq!(
            resolve_identity(identity, Some("unix:///spiffe/agent.sock")).unwrap(),
            expected,
            "{identity:?}"
        );
    }
    // Set but empty is not set.
    assert!(matches!(
        resolve_identity("", Some("")),
        Err(ConfigError::NoIdentity { .. })
    ));
}

#[test]
fn files_and_the_workload_api_together_are_an_error() {
    let both = format!("{FILES}  workload_api: unix:///run/spire/agent.sock\n");
    let error = resolve_identity(&both, None).unwrap_err();
    assert_eq!(
        error,
        ConfigError::TwoIdentitySources {
            file: "segward.yaml".into(),
            files: "identity.cert",
            workload_api: "identity.workload_api",
        }
    );
    assert!(error.to_string().contains("not both"), "{error}");
    // Files in the config and the variable in the environment: also two sources.
    let error = resolve_identity(FILES, Some("unix:///spiffe/agent.sock")).unwrap_err();
    assert_eq!(
        error,
        ConfigError::TwoIdentitySources {
            file: "segward.yaml".into(),
            files: "identity.cert",
            workload_api: ENDPOINT_ENV,
        }
    );
    // Even one file key next to workload_api.
    let one = "identity:\n  bundles:\n    example.org: b.pem\n  workload_api: unix:///a.sock\n";
    assert!(matches!(
        resolve_identity(one, None),
        Err(ConfigError::TwoIdentitySources {
            files: "identity.bundles",
            ..
        })
    ));
}

#[test]
fn no_source_or_half_a_file_source_is_an_error() {
    for identity in ["", "identity: {}\n"] {
        let error = resolve_identity(identity, None).unwrap_err();
        assert!(matches!(error, ConfigError::NoIdentity { .. }), "{error}");
        assert!(
            error.to_string().contains("SPIFFE_ENDPOINT_SOCKET"),
            "{error}"
        );
    }
    let no_key = "identity:\n  cert: a.pem\n  bundles:\n    example.org: b.pem\n";
    assert_eq!(
        resolve_identity(no_key, None).unwrap_err(),
        ConfigError::MissingIdentityFile {
            file: "segward.yaml".into(),
            key: "identity.key",
        }
    );
    let no_bundles = "identity:\n  cert: a.pem\n  key: a.key\n";
    assert!(matches!(
        resolve_identity(no_bundles, None),
        Err(ConfigError::NoBundles { .. })
    ));
}

#[test]
fn a_bad_socket_uri_names_the_setting_that_gave_it() {
    let error = resolve_identity("identity:\n  workload_api: /run/agent.sock\n", None).unwrap_err();
    assert!(
        matches!(&error, ConfigError::BadWorkloadApi { key: "identity.workload_api", value, .. } if value == "/run/agent.sock"),
        "{error:?}"
    );
    let error = resolve_identity("", Some("tcp://localhost:8081")).unwrap_err();
    assert!(
        matches!(
            &error,
            ConfigError::BadWorkloadApi {
                key: ENDPOINT_ENV,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("IP address"), "{error}");
}

#[test]
fn file_identity_paths_resolve_against_the_config_folder() {
    let identity = resolve_identity(FILES, None).unwrap();
    let files = identity.files().unwrap();
    assert_eq!(files.cert, PathBuf::from("/etc/segward/svid.pem"));
    assert!(identity.workload_api().is_none());
}
