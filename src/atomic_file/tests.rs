use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn names(dir: &Path) -> Vec<std::ffi::OsString> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[test]
fn a_new_file_appears_whole_and_never_replaces_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contain-x.yaml");
    let new = AtomicWrite::new().create_new();
    new.write(&path, "revoked: []\n").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "revoked: []\n");
    let again = new.write(&path, "revoked: [a]\n").unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read_to_string(&path).unwrap(), "revoked: []\n");
    assert_eq!(
        names(dir.path()),
        ["contain-x.yaml"],
        "no temporary file left"
    );
    let missing = dir.path().join("no-such-folder").join("contain-y.yaml");
    assert!(new.write(&missing, "").is_err());
}

#[test]
fn a_replaced_file_is_whole_and_a_key_is_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svid.key");
    fs::write(&path, "old").unwrap();
    AtomicWrite::new().mode(0o600).write(&path, "new").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(names(dir.path()), ["svid.key"], "no temporary file left");
}
