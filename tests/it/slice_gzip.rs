//! `policy slice` writing gzip-compressed slices (docs/fleet.md "Slices over 1 MiB"): with
//! `--gzip always` every slice is `*.yaml.gz` that checks, explains and verifies as its YAML
//! would, byte-identical run after run, and kustomize puts it in the ConfigMap's
//! `binaryData`; in `auto` only a slice over 1 MiB is compressed, and one still over 1 MiB
//! compressed is refused; switching back to plain YAML removes the stale compressed files.

use std::fs;
use std::path::Path;

use tempfile::TempDir;

use crate::cli::{policy_dir, segward, segward_in};
use crate::slice_cmd::{IDS, REQUESTS, decide, per, rendered, signing_keys, stderr_line, tree};
use segward::policy::load::{gunzip, gzip};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn slice(args: &[&str], out: &Path) -> crate::cli::Output {
    let whole = Path::new(ROOT).join("policies");
    let mut all = vec!["policy", "slice", whole.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap()]);
    segward(&all)
}

/// The names of the files in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn gzip_always_writes_slices_that_decide_verify_and_render_as_their_yaml_would() {
    let (_keys, key, public) = signing_keys();
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let args = [
        "--per",
        "namespace",
        "--gzip",
        "always",
        "--sign",
        key.to_str().unwrap(),
    ];

    let first = slice(&args, a.path());
    let second = slice(&args, b.path());

    assert_eq!((first.code, second.code), (0, 0), "{first:?}");
    assert_eq!(
        tree(a.path()),
        tree(b.path()),
        "compressed output is deterministic"
    );
    let prod = a.path().join("prod");
    assert_eq!(names(&prod), ["fleet.yaml.gz", "policy.sig"]);
    let text = gunzip(&fs::read(prod.join("fleet.yaml.gz")).unwrap()).unwrap();
    assert!(text.starts_with("# segward policy slice for "), "{text}");
    let verify = |dir: &Path| {
        let (dir, public) = (dir.to_str().unwrap(), public.to_str().unwrap());
        segward(&["policy", "check", dir, "--verify-key", public]).code
    };
    let whole = Path::new(ROOT).join("policies");
    for group in ["other", "prod", "staging"] {
        let dir = a.path().join(group);
        assert_eq!(verify(&dir), 0, "{group}");
    }
    // Every request between shipped identities whose destination is in prod: the gzip
    // slice explains it as the whole policy does.
    for from in IDS {
        for to in IDS.iter().filter(|id| id.contains("/ns/prod/")) {
            for (method, path) in REQUESTS {
                assert_eq!(
                    decide(&prod, from, to, method, path),
                    decide(&whole, from, to, method, path),
                    "{from} -> {to} {method} {path}"
                );
            }
        }
    }
    let kustomization = fs::read_to_string(a.path().join("kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("\"prod/fleet.yaml.gz\""),
        "{kustomization}"
    );
    let shown = rendered(a.path(), 3);
    if !shown.is_empty() {
        assert_eq!(shown.matches("binaryData:").count(), 3, "{shown}");
        // kubectl writes the base64 as a block scalar under the file name.
        assert!(
            shown.contains("binaryData:\n  fleet.yaml.gz: |\n    H4sI"),
            "{shown}"
        );
    }

    // Edited after signing (recompressed with one more rule): refused.
    let edited = format!("{text}  - {{ name: sneaky, from: [\"*\"], to: [\"*\"] }}\n");
    fs::write(prod.join("fleet.yaml.gz"), gzip(&edited)).unwrap();
    assert_eq!(
        verify(&prod),
        1,
        "an edited compressed slice must not verify"
    );

    // Back to plain YAML: the compressed slice files go, the YAML ones come.
    let plain = slice(&["--per", "namespace", "--gzip", "never"], a.path());
    assert_eq!(plain.code, 0, "{plain:?}");
    assert_eq!(names(&prod), ["fleet.yaml", "policy.sig"]);
    assert!(!plain.stdout.contains("gzip"), "{plain:?}");
}

/// A policy whose one big namespace slice is `pad` bytes of description per segment.
pub(crate) fn big(pad: impl Fn(usize) -> String) -> String {
    let mut big = String::from(
        "segments:\n  small:\n    identities: [\"spiffe://example.org/ns/small/sa/one\"]\n",
    );
    for n in 0..4000 {
        big.push_str(&format!(
            "  s{n}:\n    identities: [\"spiffe://example.org/ns/big/sa/s{n}\"]\n    description: {}\n",
            pad(n)
        ));
    }
    big.push_str("rules:\n");
    for n in 0..4000 {
        big.push_str(&format!(
            "  - name: r{n}\n    from: [s{n}]\n    to: [s{}]\n",
            (n + 1) % 4000
        ));
    }
    big
}

#[test]
fn auto_compresses_only_a_slice_over_one_mebibyte_and_refuses_one_still_over_it() {
    let dir = policy_dir(&[("policies/big.yaml", &big(|_| "x".repeat(240)))]);

    let out = per(dir.path(), "namespace", "out");

    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(names(&dir.path().join("out/big")), ["big.yaml.gz"]);
    assert_eq!(names(&dir.path().join("out/small")), ["big.yaml"]);
    let row = out.stdout.lines().find(|l| l.starts_with("big ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    let (bytes, yaml): (usize, usize) = (cells[2].parse().unwrap(), cells[3].parse().unwrap());
    assert!(yaml > 1024 * 1024 && bytes <= 1024 * 1024, "{row}");
    assert_eq!(cells.last(), Some(&"gzip"), "{row}");
    let check = segward_in(dir.path(), &["policy", "check", "out/big"]);
    assert_eq!(check.code, 0, "{check:?}");

    // Descriptions no compressor shrinks enough (a 64-bit mix per segment, in hex).
    let noise = |n: usize| {
        (0..32)
            .map(|k| {
                let mut x = (n * 32 + k) as u64 ^ 0x9e37_79b9_7f4a_7c15;
                x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                format!("{:016x}", x ^ (x >> 31))
            })
            .collect::<String>()
    };
    let dir = policy_dir(&[("policies/big.yaml", &big(noise))]);

    let out = per(dir.path(), "namespace", "out");

    assert_eq!(out.code, 1, "{out:?}");
    let line = stderr_line(&out, "group big");
    assert!(line.contains("gzip-compressed"), "{line}");
    assert!(!dir.path().join("out").exists());
}
