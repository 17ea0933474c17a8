//! Reading policy folders: gzip-compressed files are read inflated, bounded and checked.

use std::fs;

use super::{MAX_FILE_BYTES, PolicySource, gunzip, gzip, is_policy_name};
use crate::policy::PolicyErrorKind;

const SEGMENT: &str = "segments:\n  web:\n    identities: [\"spiffe://example.org/ns/a/sa/web\"]\n";
const RULE: &str = "rules:\n  - name: web-to-web\n    from: [web]\n    to: [web]\n";

#[test]
fn gzip_and_plain_files_of_a_folder_are_read_in_name_order_as_text() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("10-segments.yaml"), SEGMENT).unwrap();
    fs::write(dir.path().join("20-rules.yml.gz"), gzip(RULE)).unwrap();
    fs::write(dir.path().join("notes.gz"), gzip(RULE)).unwrap();
    fs::write(dir.path().join(".hidden.yaml.gz"), b"junk").unwrap();

    let texts = PolicySource::read(dir.path()).unwrap();

    let names: Vec<String> = texts
        .iter()
        .map(|(n, _)| n.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["10-segments.yaml", "20-rules.yml.gz"]);
    assert_eq!(texts[1].1, RULE);
    let source = PolicySource::load(dir.path()).unwrap();
    assert_eq!(crate::policy::compile(&source).unwrap().rules().len(), 1);
}

#[test]
fn an_error_in_a_gzip_file_is_located_in_its_inflated_text() {
    let dir = tempfile::tempdir().unwrap();
    let broken = format!("{SEGMENT}rules:\n  - name: r\n    from: [web]\n    to: [nobody]\n");
    fs::write(dir.path().join("p.yaml.gz"), gzip(&broken)).unwrap();

    let source = PolicySource::load(dir.path()).unwrap();
    let errors = crate::policy::compile(&source).unwrap_err();

    let shown = errors.to_string();
    assert!(shown.contains("p.yaml.gz:7:"), "{shown}");
    assert!(shown.contains("unknown segment `nobody`"), "{shown}");
}

#[test]
fn the_same_text_always_compresses_to_the_same_bytes_and_inflates_back() {
    let text = format!("{SEGMENT}{RULE}").repeat(50);
    let (a, b) = (gzip(&text), gzip(&text));
    assert_eq!(a, b);
    assert!(a.len() < text.len() / 10, "{} of {}", a.len(), text.len());
    assert_eq!(&a[..2], [0x1f, 0x8b]);
    assert_eq!(gunzip(&a).unwrap(), text);
}

#[test]
fn a_corrupt_cut_short_or_foreign_gzip_file_is_refused_naming_it() {
    let whole = gzip(RULE);
    let mut flipped = whole.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let cases: [(&str, Vec<u8>); 4] = [
        ("cut", whole[..whole.len() - 6].to_vec()),
        ("flipped", flipped),
        ("plain", RULE.as_bytes().to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("p.yaml.gz"), &bytes).unwrap();
        let errors = PolicySource::read(dir.path()).unwrap_err();
        let error = &errors.0[0];
        assert!(error.file.ends_with("p.yaml.gz"), "{what}: {error}");
        assert!(
            matches!(error.kind, PolicyErrorKind::Gzip(_)),
            "{what}: {error}"
        );
        assert_eq!(error.kind.reason(), "gzip");
    }
}

#[test]
fn a_gzip_file_inflating_past_the_size_limit_or_to_non_text_is_refused() {
    // 64 MiB + 1 of zeros compresses to about 64 KiB: a bomb the limit stops.
    let bomb = gzip(&"\0".repeat(MAX_FILE_BYTES as usize + 1));
    assert!(bomb.len() < 1024 * 1024);
    assert!(matches!(
        gunzip(&bomb),
        Err(PolicyErrorKind::TooLarge(_, MAX_FILE_BYTES))
    ));

    let mut binary = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut binary, &[0xff, 0xfe, 0x00, 0x80]).unwrap();
    let binary = binary.finish().unwrap();
    assert!(matches!(gunzip(&binary), Err(PolicyErrorKind::Io(m)) if m.contains("UTF-8")));
}

#[test]
fn policy_file_names_are_yaml_or_yml_optionally_gzip_compressed() {
    for name in ["a.yaml", "a.yml", "a.yaml.gz", "a.yml.gz"] {
        assert!(is_policy_name(name), "{name}");
    }
    for name in ["a.gz", "a.json", "a.yaml.bak", "a.yaml.gz.tmp", "yaml"] {
        assert!(!is_policy_name(name), "{name}");
    }
}
