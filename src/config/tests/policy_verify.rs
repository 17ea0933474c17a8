//! docs/configuration.md `policy_verify`: the key files resolve against the config's folder
//! and are read at load; every problem names its key path.

use std::fs;

use super::{MINIMAL, load_text};
use crate::config::ConfigError;
use crate::signing::{KeyError, generate};

#[test]
fn keys_resolve_against_the_config_folder_and_are_read_at_load() {
    let (dir, path, _) = load_text(MINIMAL);
    let (old, new) = (generate().unwrap(), generate().unwrap());
    fs::create_dir(dir.path().join("keys")).unwrap();
    fs::write(dir.path().join("keys/old.pub"), &old.public_pem).unwrap();
    fs::write(dir.path().join("keys/new.pub"), &new.public_pem).unwrap();
    let text = format!("{MINIMAL}policy_verify:\n  keys: [keys/old.pub, keys/new.pub]\n");
    fs::write(&path, text).unwrap();

    let config = crate::config::Config::load(&path).unwrap();

    let keys = config.policy_verify.unwrap();
    let fingerprints: Vec<_> = keys.keys().iter().map(|k| k.fingerprint()).collect();
    assert_eq!(fingerprints, [old.fingerprint, new.fingerprint]);
}

#[test]
fn without_policy_verify_no_signature_is_asked_for() {
    let (_dir, _, config) = load_text(MINIMAL);
    assert_eq!(config.unwrap().policy_verify, None);
}

#[test]
fn every_bad_key_entry_is_named_by_its_key_path() {
    let (dir, path, _) = load_text(MINIMAL);
    let good = generate().unwrap();
    fs::write(dir.path().join("good.pub"), &good.public_pem).unwrap();
    fs::write(dir.path().join("private.pem"), &good.private_pem).unwrap();
    let rows = [
        (
            "[good.pub, missing.pub]",
            "policy_verify.keys[1]",
            "cannot read",
        ),
        (
            "[private.pem]",
            "policy_verify.keys[0]",
            "not an Ed25519 public key",
        ),
        ("[good.pub, '']", "policy_verify.keys[1]", "empty path"),
        ("[]", "policy_verify.keys", "empty"),
    ];
    for (keys, key, problem) in rows {
        fs::write(&path, format!("{MINIMAL}policy_verify:\n  keys: {keys}\n")).unwrap();
        let error = crate::config::Config::load(&path).unwrap_err().to_string();
        assert!(error.contains(&format!("segward.yaml: {key}: ")), "{error}");
        assert!(error.contains(problem), "{problem}: {error}");
    }
}

#[test]
fn a_file_holding_no_key_is_refused_as_not_a_public_key() {
    let (dir, path, _) = load_text(MINIMAL);
    fs::write(dir.path().join("k.pem"), "nothing").unwrap();
    fs::write(
        &path,
        format!("{MINIMAL}policy_verify: {{ keys: [k.pem] }}\n"),
    )
    .unwrap();
    let error = crate::config::Config::load(&path).unwrap_err();
    assert!(
        matches!(
            &error,
            ConfigError::BadVerifyKey {
                problem: KeyError::NotPublicKey,
                ..
            }
        ),
        "{error:?}"
    );
}
