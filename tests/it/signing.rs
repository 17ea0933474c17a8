//! Signed policy end to end (docs/fleet.md#signed-policy): keys made by `segward certs
//! signing-key` and read by the real `openssl`; folders signed by `segward policy sign`;
//! sidecars with `policy_verify` that take a good signature and refuse a tampered file, a
//! missing signature and a signature by another key — at start-up (the process exits 1
//! naming the folder) and on reload (the last good policy stays: a request only the
//! refused policy allows is still 403, and nothing reaches the backend); key rotation with
//! two keys trusted.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use http::StatusCode;
use segward::app::Sidecar;
use segward::reload::{Change, ReloadError};
use segward::signing::{KeyFiles, SignatureError, write_key_pair};
use serde_json::Value;

use crate::cli::{Output, segward};
use crate::support::backend::Backend;
use crate::support::client::{Alpn, MtlsClient, PlainClient};
use crate::support::component::present_or_skip;
use crate::support::metrics::{count, scrape};
use crate::support::pki::Pki;
use crate::support::process::Segward;
use crate::support::sidecar::{inbound_block, start, write_config, write_policy};

const TD: &str = "example.org";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const API: &str = "spiffe://example.org/ns/prod/sa/api";

/// Web may read api's `/v1/**`, nothing else.
const GOOD: &str = r#"segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
rules:
  - name: web-reads-api
    from: [web]
    to: [api]
    methods: [GET]
    paths: ["/v1/**"]
"#;

/// What an attacker (or an unreviewed change) would slip in: web may also reach `/admin/**`.
fn wider() -> String {
    format!(
        "{GOOD}  - name: web-admin\n    from: [web]\n    to: [api]\n    paths: [\"/admin/**\"]\n"
    )
}

/// A PKI, a backend, two key pairs (`old`, `new`) and a third nobody trusts (`stranger`), and
/// a policy folder holding [`GOOD`] signed by `old`.
struct Fleet {
    pki: Pki,
    backend: Backend,
    old: KeyFiles,
    new: KeyFiles,
    stranger: KeyFiles,
    policy: PathBuf,
}

impl Fleet {
    async fn new() -> Fleet {
        let pki = Pki::new(&[TD]);
        let keys = |name: &str| write_key_pair(&pki.dir().join(name), false).unwrap();
        let (old, new, stranger) = (keys("old"), keys("new"), keys("stranger"));
        let policy = write_policy(&pki, GOOD);
        sign(&policy, &old);
        Fleet {
            backend: Backend::start().await,
            pki,
            old,
            new,
            stranger,
            policy,
        }
    }

    /// api's config with `listeners`, trusting `keys`.
    fn config(&self, keys: &[&KeyFiles], listeners: &str) -> PathBuf {
        let keys: Vec<_> = keys
            .iter()
            .map(|k| k.public.display().to_string())
            .collect();
        let verify = format!("policy_verify:\n  keys: [{}]\n", keys.join(", "));
        let svid = self.pki.issue(API);
        write_config(&self.pki, &svid, &[TD], &self.policy, &(verify + listeners))
    }

    /// api's sidecar in process, trusting `keys`; reloads only when the test says so.
    async fn sidecar(&self, keys: &[&KeyFiles]) -> Sidecar {
        let config = self.config(keys, &inbound_block(self.backend.addr()));
        start(&config, |config| config.reload.watch_files = false).await
    }

    /// `GET path` from web: the status, and whether the backend saw the request.
    async fn web_get(&self, sidecar: &Sidecar, path: &str) -> (StatusCode, bool) {
        let web = self.pki.issue(WEB);
        let client = MtlsClient::new(Some(&web.pem), &self.pki.bundle_pems(), Alpn::H1);
        let addr = sidecar.inbound_addr().unwrap();
        let status = client.get(addr, path).await.unwrap().status;
        let arrived = self.backend.requests().iter().any(|r| r.target == path);
        (status, arrived)
    }

    fn policy_file(&self) -> PathBuf {
        self.policy.join("policy.yaml")
    }
}

/// `segward policy sign POLICY --key KEY`, which must succeed.
fn sign(policy: &Path, key: &KeyFiles) {
    let out = segward(&["policy", "sign", s(policy), "--key", s(&key.private)]);
    assert_eq!(out.code, 0, "{out:?}");
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

// --- the sidecar: start-up ---------------------------------------------------------------------

#[tokio::test]
async fn a_signed_policy_loads_and_serves() {
    let fleet = Fleet::new().await;
    let sidecar = fleet.sidecar(&[&fleet.old]).await;
    assert_eq!(
        fleet.web_get(&sidecar, "/v1/x").await,
        (StatusCode::OK, true)
    );
    assert_eq!(
        fleet.web_get(&sidecar, "/admin/x").await,
        (StatusCode::FORBIDDEN, false)
    );
}

/// `segward run` with `fleet`'s folder as `change` left it, trusting `old`: exits 1 naming the
/// folder, and nothing ever listened.
async fn refused_at_start(change: impl FnOnce(&Fleet)) {
    let fleet = Fleet::new().await;
    change(&fleet);
    let listen = Backend::unused_addr();
    let listeners = format!(
        "inbound:\n  listen: {listen}\n  upstream: {}\nadmin:\n  listen: {}\n",
        fleet.backend.addr(),
        Backend::unused_addr()
    );
    let config = fleet.config(&[&fleet.old], &listeners);
    let mut process = Segward::spawn(&config);
    let (code, listened) = process.exit_code_watching(Some(listen)).await;
    let stderr = process.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(!listened, "{stderr}");
    let named = format!("{}: ", fleet.policy.display());
    assert!(stderr.lines().any(|l| l.starts_with(&named)), "{stderr}");
}

#[tokio::test]
async fn a_tampered_file_stops_the_sidecar_at_start_up() {
    refused_at_start(|fleet| fs::write(fleet.policy_file(), wider()).unwrap()).await;
}

#[tokio::test]
async fn a_missing_signature_stops_the_sidecar_at_start_up() {
    refused_at_start(|fleet| fs::remove_file(fleet.policy.join("policy.sig")).unwrap()).await;
}

#[tokio::test]
async fn a_signature_by_another_key_stops_the_sidecar_at_start_up() {
    refused_at_start(|fleet| sign(&fleet.policy, &fleet.stranger)).await;
}

// --- the sidecar: reload -----------------------------------------------------------------------

/// A running sidecar trusting `old`; `change` makes its folder allow `/admin/**` without a
/// valid signature. The reload is refused as `policy-signature` (in the report, `/policy`
/// and the metric) and the good policy stays: `/admin/x` is 403 and never reaches the backend.
async fn refused_on_reload(change: impl FnOnce(&Fleet), why: fn(&SignatureError) -> bool) {
    let fleet = Fleet::new().await;
    let sidecar = fleet.sidecar(&[&fleet.old]).await;
    change(&fleet);

    let report = sidecar.reload(false).await;

    let Change::Rejected(ReloadError::PolicySignature(error)) = &report.policy else {
        panic!("not refused for its signature: {report:?}");
    };
    assert!(why(error), "{error:?}");
    assert_eq!(
        fleet.web_get(&sidecar, "/admin/x").await,
        (StatusCode::FORBIDDEN, false)
    );
    assert_eq!(
        fleet.web_get(&sidecar, "/v1/x").await,
        (StatusCode::OK, true)
    );
    let admin = sidecar.admin_addr();
    let policy: Value =
        serde_json::from_slice(&PlainClient::get(admin, "/policy").await.unwrap().body).unwrap();
    assert_eq!(policy["last_reload_reason"]["policy"], "policy-signature");
    let shown = policy["last_reload_error"]["policy"].as_str().unwrap();
    assert!(
        shown.starts_with(&fleet.policy.display().to_string()),
        "{shown}"
    );
    let rejected = r#"segward_reload_rejections_total{what="policy",reason="policy-signature"}"#;
    assert_eq!(count(&scrape(admin).await, rejected), 1.0);
}

#[tokio::test]
async fn a_tampered_file_is_refused_on_reload_and_the_last_good_policy_stays() {
    refused_on_reload(
        |fleet| fs::write(fleet.policy_file(), wider()).unwrap(),
        |e| matches!(e, SignatureError::NotSigned { .. }),
    )
    .await;
}

#[tokio::test]
async fn an_unsigned_change_is_refused_on_reload_and_the_last_good_policy_stays() {
    refused_on_reload(
        |fleet| {
            fs::write(fleet.policy_file(), wider()).unwrap();
            fs::remove_file(fleet.policy.join("policy.sig")).unwrap();
        },
        |e| matches!(e, SignatureError::Missing { .. }),
    )
    .await;
}

#[tokio::test]
async fn a_change_signed_by_another_key_is_refused_on_reload_and_the_last_good_policy_stays() {
    refused_on_reload(
        |fleet| {
            fs::write(fleet.policy_file(), wider()).unwrap();
            sign(&fleet.policy, &fleet.stranger);
        },
        |e| matches!(e, SignatureError::UnknownKey { .. }),
    )
    .await;
}

#[tokio::test]
async fn while_two_keys_are_trusted_either_signature_is_taken() {
    let fleet = Fleet::new().await;
    // Rotation, step 1: every sidecar trusts the old and the new key; the folder is still
    // signed by the old one.
    let sidecar = fleet.sidecar(&[&fleet.old, &fleet.new]).await;
    assert_eq!(
        fleet.web_get(&sidecar, "/v1/x").await,
        (StatusCode::OK, true)
    );

    // Step 2: CI signs with the new key.
    fs::write(fleet.policy_file(), wider()).unwrap();
    sign(&fleet.policy, &fleet.new);
    assert_eq!(sidecar.reload(false).await.policy, Change::Applied);
    assert_eq!(
        fleet.web_get(&sidecar, "/admin/x").await,
        (StatusCode::OK, true)
    );

    // The old key still signs while it is trusted; a stranger's never does.
    fs::write(fleet.policy_file(), GOOD).unwrap();
    sign(&fleet.policy, &fleet.old);
    assert_eq!(sidecar.reload(false).await.policy, Change::Applied);
    sign(&fleet.policy, &fleet.stranger);
    let refused = sidecar.reload(true).await.policy;
    assert!(
        matches!(refused, Change::Rejected(ReloadError::PolicySignature(_))),
        "{refused:?}"
    );
}

// --- the CLI -----------------------------------------------------------------------------------

fn check(policy: &Path, keys: &[&KeyFiles]) -> Output {
    let mut args = vec!["policy", "check", s(policy)];
    for key in keys {
        args.extend(["--verify-key", s(&key.public)]);
    }
    segward(&args)
}

#[tokio::test]
async fn policy_check_verify_key_exits_1_on_each_bad_signature() {
    let fleet = Fleet::new().await;
    let good = check(&fleet.policy, &[&fleet.new, &fleet.old]);
    assert_eq!(good.code, 0, "{good:?}");
    let signer = format!("signature: ok, by key {}\n", fleet.old.fingerprint);
    assert!(good.stdout.contains(&signer), "{good:?}");

    let by_other = check(&fleet.policy, &[&fleet.new]);
    assert_eq!(by_other.code, 1, "{by_other:?}");
    assert!(
        by_other.stderr.contains("none of the 1 key(s) trusted"),
        "{by_other:?}"
    );

    fs::write(fleet.policy.join("extra.yaml"), "rules: []\n").unwrap();
    let added = check(&fleet.policy, &[&fleet.old]);
    assert_eq!(added.code, 1, "{added:?}");
    assert!(added.stderr.contains("not the ones signed"), "{added:?}");

    fs::remove_file(fleet.policy.join("policy.sig")).unwrap();
    let missing = check(&fleet.policy, &[&fleet.old]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("policy signature missing"),
        "{missing:?}"
    );
    // Without --verify-key a signature is not asked for.
    assert_eq!(check(&fleet.policy, &[]).code, 0);
}

#[tokio::test]
async fn a_single_policy_file_is_signed_beside_it() {
    let fleet = Fleet::new().await;
    let file = fleet.policy_file();
    sign(&file, &fleet.new);
    assert!(PathBuf::from(format!("{}.sig", file.display())).is_file());
    assert_eq!(check(&file, &[&fleet.new]).code, 0);
    assert_eq!(check(&file, &[&fleet.old]).code, 1);
}

#[test]
fn an_invalid_policy_is_not_signed() {
    let dir = tempfile::tempdir().unwrap();
    let key = write_key_pair(dir.path(), false).unwrap();
    fs::write(dir.path().join("policy.yaml"), "rules: [ {\n").unwrap();
    let out = segward(&["policy", "sign", s(dir.path()), "--key", s(&key.private)]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!dir.path().join("policy.sig").exists());
}

// --- openssl compatibility ---------------------------------------------------------------------

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl").args(args).output().unwrap()
}

fn has_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn openssl_reads_our_keys_and_accepts_our_signatures() {
    if !present_or_skip(
        "signing::openssl_reads_our_keys_and_accepts_our_signatures",
        "openssl",
        has_openssl(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let made = segward(&["certs", "signing-key", "--out", s(&at("keys"))]);
    assert_eq!(made.code, 0, "{made:?}");
    let (key, public) = (at("keys/signing.key"), at("keys/signing.pub"));
    let pubout = openssl(&["pkey", "-in", s(&key), "-pubout"]);
    assert!(pubout.status.success(), "{pubout:?}");
    assert_eq!(
        String::from_utf8(pubout.stdout).unwrap(),
        fs::read_to_string(&public).unwrap()
    );

    fs::create_dir(at("policy")).unwrap();
    fs::write(at("policy/policy.yaml"), GOOD).unwrap();
    let signed = segward(&["policy", "sign", s(&at("policy")), "--key", s(&key)]);
    assert_eq!(signed.code, 0, "{signed:?}");
    // The signature file's digest and signature, as the bytes openssl verifies.
    let text = fs::read_to_string(at("policy/policy.sig")).unwrap();
    let field = |name: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        hex(line.trim_start_matches("sha256:"))
    };
    fs::write(at("digest.bin"), field("digest: ")).unwrap();
    fs::write(at("sig.bin"), field("signature: ")).unwrap();
    let verified = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        s(&public),
        "-rawin",
        "-in",
        s(&at("digest.bin")),
        "-sigfile",
        s(&at("sig.bin")),
    ]);
    assert!(verified.status.success(), "{verified:?}");
}

#[test]
fn keys_openssl_made_sign_and_verify() {
    if !present_or_skip(
        "signing::keys_openssl_made_sign_and_verify",
        "openssl",
        has_openssl(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let made = openssl(&["genpkey", "-algorithm", "ed25519", "-out", s(&at("k.pem"))]);
    assert!(made.status.success(), "{made:?}");
    let public = openssl(&[
        "pkey",
        "-in",
        s(&at("k.pem")),
        "-pubout",
        "-out",
        s(&at("p.pem")),
    ]);
    assert!(public.status.success(), "{public:?}");
    fs::write(at("policy.yaml"), GOOD).unwrap();

    let signed = segward(&[
        "policy",
        "sign",
        s(&at("policy.yaml")),
        "--key",
        s(&at("k.pem")),
    ]);
    assert_eq!(signed.code, 0, "{signed:?}");
    let checked = segward(&[
        "policy",
        "check",
        s(&at("policy.yaml")),
        "--verify-key",
        s(&at("p.pem")),
    ]);
    assert_eq!(checked.code, 0, "{checked:?}");
}

fn hex(digits: &str) -> Vec<u8> {
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}
