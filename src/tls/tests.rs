//! Real handshakes over 127.0.0.1 with certificates minted here: who gets in, who does not,
//! and why (asserted on the error, never on log text).

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, IsCa, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, Error, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::certs::{Ca, IssuedSvid, svid_params};
use crate::identity::{Role, SpiffeId, Svid, SvidError, TrustDomain};

const HOUR: Duration = Duration::from_secs(3600);

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).unwrap()
}

fn id(text: &str) -> SpiffeId {
    SpiffeId::parse(text).unwrap()
}

fn issue(ca: &Ca, spiffe_id: &str) -> IssuedSvid {
    ca.issue(&id(spiffe_id), HOUR, &["localhost".to_owned()])
        .unwrap()
}

fn checked(svid: &IssuedSvid, bundles: &[(&str, &Ca)]) -> Credentials {
    let bundles: Vec<_> = bundles
        .iter()
        .map(|(name, ca)| (td(name), ca.cert_pem()))
        .collect();
    Credentials::from_pem(&svid.chain_pem, &svid.key_pem, &bundles, SystemTime::now()).unwrap()
}

/// Live TLS material holding `svid` and trusting `bundles`, as a sidecar holds it.
fn credentials(svid: &IssuedSvid, bundles: &[(&str, &Ca)]) -> LiveTls {
    LiveTls::new(checked(svid, bundles)).unwrap()
}

/// A plain rustls client presenting `svid` whatever it holds, trusting `server_ca` by DNS
/// name: how a misbehaving peer reaches our server verifier.
fn raw_client(svid: &IssuedSvid, server_ca: &Ca, tls12_only: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.cert_der().to_vec()))
        .unwrap();
    let chain = CertificateDer::pem_slice_iter(svid.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(svid.key_pem.as_bytes()).unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

fn raw_client_without_cert(server_ca: &Ca) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.cert_der().to_vec()))
        .unwrap();
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The outcome of one handshake on each side.
struct Outcome {
    /// The server's view: the peer's SPIFFE ID, or the handshake error.
    server: Result<SpiffeId, io::Error>,
    /// The client's view: whether it completed and read the server's first byte.
    client: Result<(), io::Error>,
}

/// Runs one handshake over 127.0.0.1; the server reads the peer's ID from
/// `peer_certificates()[0]` and writes one byte so the client sees the final outcome.
async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let svid = Svid::from_der(&leaf, Role::Client, SystemTime::now()).unwrap();
        tls.write_all(b"k").await?;
        tls.shutdown().await?;
        Ok::<_, io::Error>(svid.id)
    });
    let connect = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        Ok::<_, io::Error>(())
    };
    let limit = Duration::from_secs(10);
    let client = tokio::time::timeout(limit, connect).await.unwrap();
    let server = tokio::time::timeout(limit, accept).await.unwrap().unwrap();
    Outcome { server, client }
}

/// The rustls error inside a handshake's `io::Error`.
fn rustls_error(error: &io::Error) -> &Error {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {error:?}"))
}

/// Our [`TlsError`] inside a handshake's `io::Error`.
fn tls_error(error: &io::Error) -> TlsError {
    let rustls = rustls_error(error);
    TlsError::from_handshake(rustls)
        .unwrap_or_else(|| panic!("not a segward TlsError: {rustls:?}"))
        .clone()
}

/// CA of `a.org` and a server SVID `spiffe://a.org/api` trusting a.org only.
fn server_in_a() -> (Ca, Arc<ServerConfig>) {
    let ca = Ca::new(&td("a.org")).unwrap();
    let creds = credentials(&issue(&ca, "spiffe://a.org/api"), &[("a.org", &ca)]);
    (ca, server_config(&creds, TlsOptions::default()).unwrap())
}

#[tokio::test]
async fn good_client_is_accepted_and_its_id_read() {
    let (ca, server) = server_in_a();
    let client = credentials(&issue(&ca, "spiffe://a.org/web"), &[("a.org", &ca)]);
    let client = client_config(&client, &id("spiffe://a.org/api"), TlsOptions::default());
    let outcome = handshake(server, client.unwrap()).await;
    assert_eq!(outcome.server.unwrap(), id("spiffe://a.org/web"));
    outcome.client.unwrap();
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let (ca, server) = server_in_a();
    let outcome = handshake(server, raw_client_without_cert(&ca)).await;
    let error = outcome.server.unwrap_err();
    assert_eq!(rustls_error(&error), &Error::NoCertificatesPresented);
    assert!(outcome.client.is_err());
}

#[tokio::test]
async fn unknown_trust_domain_is_refused() {
    let (ca, server) = server_in_a();
    let ca_c = Ca::new(&td("c.org")).unwrap();
    let client = raw_client(&issue(&ca_c, "spiffe://c.org/web"), &ca, false);
    let outcome = handshake(server, client).await;
    let expected = TlsError::UnknownTrustDomain {
        trust_domain: "c.org".into(),
    };
    assert_eq!(tls_error(&outcome.server.unwrap_err()), expected);
    assert!(outcome.client.is_err());
}

#[tokio::test]
async fn ca_of_one_trust_domain_cannot_vouch_for_another() {
    let ca_a = Ca::new(&td("a.org")).unwrap();
    let ca_b = Ca::new(&td("b.org")).unwrap();
    let server_svid = issue(&ca_a, "spiffe://a.org/api");
    let creds = credentials(&server_svid, &[("a.org", &ca_a), ("b.org", &ca_b)]);
    let server = server_config(&creds, TlsOptions::default()).unwrap();
    // A's CA signs a B identity.
    let forged = raw_client(&issue(&ca_a, "spiffe://b.org/x"), &ca_a, false);
    let outcome = handshake(server, forged).await;
    let error = outcome.server.unwrap_err();
    assert_eq!(
        rustls_error(&error),
        &Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    assert!(outcome.client.is_err());
}

#[tokio::test]
async fn leaf_with_two_uri_sans_is_refused() {
    let (ca, server) = server_in_a();
    let mut params = svid_params(&id("spiffe://a.org/web"), HOUR, &[]).unwrap();
    let second = SanType::URI("spiffe://a.org/admin".try_into().unwrap());
    params.subject_alt_names.push(second);
    let outcome = handshake(server, raw_client(&ca.sign(&params).unwrap(), &ca, false)).await;
    let expected = TlsError::PeerSvid(SvidError::MultipleUriSans);
    assert_eq!(tls_error(&outcome.server.unwrap_err()), expected);
    assert_eq!(expected.reason(), "multiple-uri-sans");
}

#[tokio::test]
async fn ca_certificate_as_leaf_is_refused() {
    let (ca, server) = server_in_a();
    let mut params = svid_params(&id("spiffe://a.org/web"), HOUR, &[]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    let outcome = handshake(server, raw_client(&ca.sign(&params).unwrap(), &ca, false)).await;
    let expected = TlsError::PeerSvid(SvidError::IsCa);
    assert_eq!(tls_error(&outcome.server.unwrap_err()), expected);
}

#[tokio::test]
async fn expired_leaf_is_refused() {
    let (ca, server) = server_in_a();
    let mut params = svid_params(&id("spiffe://a.org/web"), HOUR, &[]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(2);
    params.not_after = now - time::Duration::days(1);
    let outcome = handshake(server, raw_client(&ca.sign(&params).unwrap(), &ca, false)).await;
    let expected = TlsError::PeerSvid(SvidError::Expired);
    assert_eq!(tls_error(&outcome.server.unwrap_err()), expected);
}

#[tokio::test]
async fn outbound_refuses_a_server_proving_another_id() {
    let (ca, server) = server_in_a();
    let client = credentials(&issue(&ca, "spiffe://a.org/web"), &[("a.org", &ca)]);
    let expected_id = id("spiffe://a.org/billing");
    let client = client_config(&client, &expected_id, TlsOptions::default()).unwrap();
    let outcome = handshake(server, client).await;
    let expected = TlsError::WrongPeerId {
        expected: "spiffe://a.org/billing".into(),
        actual: "spiffe://a.org/api".into(),
    };
    assert_eq!(tls_error(&outcome.client.unwrap_err()), expected);
    assert!(outcome.server.is_err());
}

#[tokio::test]
async fn outbound_refuses_a_server_of_a_trust_domain_without_bundle() {
    let ca_b = Ca::new(&td("b.org")).unwrap();
    let server = credentials(&issue(&ca_b, "spiffe://b.org/api"), &[("b.org", &ca_b)]);
    let server = server_config(&server, TlsOptions::default()).unwrap();
    let ca_a = Ca::new(&td("a.org")).unwrap();
    let client = credentials(&issue(&ca_a, "spiffe://a.org/web"), &[("a.org", &ca_a)]);
    let client = client_config(&client, &id("spiffe://b.org/api"), TlsOptions::default());
    let outcome = handshake(server, client.unwrap()).await;
    let expected = TlsError::UnknownTrustDomain {
        trust_domain: "b.org".into(),
    };
    assert_eq!(tls_error(&outcome.client.unwrap_err()), expected);
}

#[tokio::test]
async fn outbound_accepts_the_right_id_without_any_dns_name() {
    let ca = Ca::new(&td("a.org")).unwrap();
    // No DNS SAN at all: the SPIFFE ID replaces the host name check.
    let svid = ca.issue(&id("spiffe://a.org/api"), HOUR, &[]).unwrap();
    let server = server_config(
        &credentials(&svid, &[("a.org", &ca)]),
        TlsOptions::default(),
    );
    let client = credentials(&issue(&ca, "spiffe://a.org/web"), &[("a.org", &ca)]);
    let client = client_config(&client, &id("spiffe://a.org/api"), TlsOptions::default());
    let outcome = handshake(server.unwrap(), client.unwrap()).await;
    assert_eq!(outcome.server.unwrap(), id("spiffe://a.org/web"));
    outcome.client.unwrap();
}

#[tokio::test]
async fn tls12_is_refused_by_default() {
    let (ca, server) = server_in_a();
    let client = raw_client(&issue(&ca, "spiffe://a.org/web"), &ca, true);
    let outcome = handshake(server, client).await;
    let error = outcome.server.unwrap_err();
    assert!(
        matches!(rustls_error(&error), Error::PeerIncompatible(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn tls12_is_accepted_when_enabled() {
    let ca = Ca::new(&td("a.org")).unwrap();
    let creds = credentials(&issue(&ca, "spiffe://a.org/api"), &[("a.org", &ca)]);
    let server = server_config(&creds, TlsOptions { tls12: true }).unwrap();
    let client = raw_client(&issue(&ca, "spiffe://a.org/web"), &ca, true);
    let outcome = handshake(server, client).await;
    assert_eq!(outcome.server.unwrap(), id("spiffe://a.org/web"));
}

/// A client listing AES-256 first (rustls' and OpenSSL's default) gets AES-128-GCM-SHA256:
/// the server's order wins (see `crypto_provider`).
#[tokio::test]
async fn the_server_picks_aes_128_gcm_whatever_the_client_lists_first() {
    let (ca, server) = server_in_a();
    let web = issue(&ca, "spiffe://a.org/web");
    let chain = CertificateDer::pem_slice_iter(web.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(web.key_pem.as_bytes()).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .unwrap();
    let stock = rustls::crypto::ring::default_provider();
    assert_eq!(
        stock.cipher_suites[0].suite(),
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
    );
    let client = ClientConfig::builder_with_provider(Arc::new(stock))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server).accept(tcp).await.unwrap();
        tls.write_all(b"k").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await.unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    accept.await.unwrap();
}

#[test]
fn configs_offer_h2_then_http11() {
    let ca = Ca::new(&td("a.org")).unwrap();
    let creds = credentials(&issue(&ca, "spiffe://a.org/api"), &[("a.org", &ca)]);
    let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let server = server_config(&creds, TlsOptions::default()).unwrap();
    assert_eq!(server.alpn_protocols, alpn);
    let own_id = creds.current().credentials().id().clone();
    let client = client_config(&creds, &own_id, TlsOptions::default()).unwrap();
    assert_eq!(client.alpn_protocols, alpn);
}

mod credentials_load {
    use super::*;

    #[test]
    fn files_load_and_name_the_id() {
        let ca = Ca::new(&td("a.org")).unwrap();
        let svid = issue(&ca, "spiffe://a.org/web");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, bundle) = (
            dir.path().join("svid.pem"),
            dir.path().join("svid.key"),
            dir.path().join("bundle.pem"),
        );
        std::fs::write(&cert, &svid.chain_pem).unwrap();
        std::fs::write(&key, &svid.key_pem).unwrap();
        std::fs::write(&bundle, ca.cert_pem()).unwrap();
        let creds = Credentials::load(&cert, &key, &[(td("a.org"), bundle)], SystemTime::now());
        let creds = creds.unwrap();
        assert_eq!(creds.id(), &id("spiffe://a.org/web"));
        assert_eq!(creds.chain().len(), 2);
        assert!(creds.bundles().contains_key("a.org"));
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("absent.pem");
        let error = Credentials::load(&cert, &cert, &[], SystemTime::now()).unwrap_err();
        assert!(matches!(&error, TlsError::Io { file, .. } if file.ends_with("absent.pem")));
        assert!(error.to_string().contains("absent.pem"));
    }

    fn from_pem(cert: &str, key: &str, bundles: &[(TrustDomain, &str)]) -> TlsError {
        Credentials::from_pem(cert, key, bundles, SystemTime::now()).unwrap_err()
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let ca = Ca::new(&td("a.org")).unwrap();
        let (one, other) = (
            issue(&ca, "spiffe://a.org/x"),
            issue(&ca, "spiffe://a.org/y"),
        );
        let bundles = [(td("a.org"), ca.cert_pem())];
        let error = from_pem(&one.chain_pem, &other.key_pem, &bundles);
        let expected = TlsError::KeyMismatch {
            cert: "<certificate>".into(),
            key: "<key>".into(),
        };
        assert_eq!(error, expected);
    }

    #[test]
    fn empty_inputs_are_refused_by_name() {
        let ca = Ca::new(&td("a.org")).unwrap();
        let svid = issue(&ca, "spiffe://a.org/x");
        let good = [(td("a.org"), ca.cert_pem())];
        let no_cert = TlsError::NoCertificate {
            file: "<certificate>".into(),
        };
        assert_eq!(from_pem("", &svid.key_pem, &good), no_cert);
        let no_key = TlsError::NoPrivateKey {
            file: "<key>".into(),
        };
        assert_eq!(from_pem(&svid.chain_pem, &svid.cert_pem, &good), no_key);
        let empty = TlsError::EmptyBundle {
            file: "<bundle a.org>".into(),
            trust_domain: "a.org".into(),
        };
        assert_eq!(
            from_pem(&svid.chain_pem, &svid.key_pem, &[(td("a.org"), "")]),
            empty
        );
        assert_eq!(
            from_pem(&svid.chain_pem, &svid.key_pem, &[]),
            TlsError::NoBundles
        );
        let twice = [(td("a.org"), ca.cert_pem()), (td("a.org"), ca.cert_pem())];
        let duplicate = TlsError::DuplicateBundle {
            trust_domain: "a.org".into(),
        };
        assert_eq!(from_pem(&svid.chain_pem, &svid.key_pem, &twice), duplicate);
    }

    #[test]
    fn own_leaf_must_be_an_svid() {
        let ca = Ca::new(&td("a.org")).unwrap();
        let mut params = svid_params(&id("spiffe://a.org/x"), HOUR, &[]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_only = ca.sign(&params).unwrap();
        let good = [(td("a.org"), ca.cert_pem())];
        let error = from_pem(&client_only.chain_pem, &client_only.key_pem, &good);
        let expected = TlsError::InvalidSvid {
            file: "<certificate>".into(),
            error: SvidError::MissingServerAuth,
        };
        assert_eq!(error, expected);
    }
}

/// The cache of fully checked chains ([`VerifiedChains`]): what a remembered chain skips and
/// what it never skips.
mod verified_chains {
    use rustls::client::ResolvesClientCert;
    use rustls::pki_types::UnixTime;
    use rustls::server::danger::ClientCertVerifier;
    use rustls::sign::CertifiedKey;

    use super::*;

    /// Presents `chain` but signs the handshake with `key`: someone who copied a certificate
    /// without its private key.
    #[derive(Debug)]
    struct Impostor(Arc<CertifiedKey>);

    impl ResolvesClientCert for Impostor {
        fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    fn chain(svid: &IssuedSvid) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(svid.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    fn impostor(stolen: &IssuedSvid, own_key: &IssuedSvid, server_ca: &Ca) -> Arc<ClientConfig> {
        let key = PrivateKeyDer::from_pem_slice(own_key.key_pem.as_bytes()).unwrap();
        let key = crypto_provider()
            .key_provider
            .load_private_key(key)
            .unwrap();
        let certified = Arc::new(CertifiedKey::new(chain(stolen), key));
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(server_ca.cert_der().to_vec()))
            .unwrap();
        let config = ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(Impostor(certified)));
        Arc::new(config)
    }

    /// Server material for `spiffe://a.org/api` and its config.
    fn server() -> (Ca, LiveTls, Arc<ServerConfig>) {
        let ca = Ca::new(&td("a.org")).unwrap();
        let live = credentials(&issue(&ca, "spiffe://a.org/api"), &[("a.org", &ca)]);
        let config = server_config(&live, TlsOptions::default()).unwrap();
        (ca, live, config)
    }

    fn remembered(live: &LiveTls) -> usize {
        live.current().client_verifier().verified_chains().len()
    }

    #[tokio::test]
    async fn a_remembered_chain_still_has_to_prove_its_private_key() {
        let (ca, live, server) = server();
        let web = issue(&ca, "spiffe://a.org/web");
        let honest = raw_client(&web, &ca, false);
        for _ in 0..2 {
            let outcome = handshake(server.clone(), honest.clone()).await;
            assert_eq!(outcome.server.unwrap(), id("spiffe://a.org/web"));
        }
        assert_eq!(remembered(&live), 1, "the same chain twice is one entry");

        // The same certificate bytes, signed for with another key: refused at the handshake
        // signature although the chain itself is remembered.
        let other = issue(&ca, "spiffe://a.org/other");
        let outcome = handshake(server, impostor(&web, &other, &ca)).await;
        let error = outcome.server.unwrap_err();
        assert!(
            matches!(rustls_error(&error), Error::InvalidCertificate(_)),
            "{error:?}"
        );
        assert!(outcome.client.is_err());
    }

    #[test]
    fn a_remembered_chain_is_checked_in_full_again_outside_its_validity() {
        let ca = Ca::new(&td("a.org")).unwrap();
        let creds = checked(&issue(&ca, "spiffe://a.org/api"), &[("a.org", &ca)]);
        let verifier = SpiffeClientVerifier::new(creds.bundles(), &crypto_provider()).unwrap();
        let web = chain(&issue(&ca, "spiffe://a.org/web"));
        let (leaf, intermediates) = web.split_first().unwrap();
        let now = UnixTime::now();
        verifier
            .verify_client_cert(leaf, intermediates, now)
            .unwrap();
        assert_eq!(verifier.verified_chains().len(), 1);

        let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 2 * 3600));
        let error = verifier
            .verify_client_cert(leaf, intermediates, later)
            .unwrap_err();
        let ours = TlsError::from_handshake(&error).unwrap();
        assert_eq!(ours, &TlsError::PeerSvid(SvidError::Expired));
        let earlier = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() - 2 * 3600));
        let error = verifier
            .verify_client_cert(leaf, intermediates, earlier)
            .unwrap_err();
        let ours = TlsError::from_handshake(&error).unwrap();
        assert_eq!(ours, &TlsError::PeerSvid(SvidError::NotYetValid));
    }

    #[test]
    fn failures_are_not_remembered_and_another_chain_is_not_a_hit() {
        let ca = Ca::new(&td("a.org")).unwrap();
        let creds = checked(&issue(&ca, "spiffe://a.org/api"), &[("a.org", &ca)]);
        let verifier = SpiffeClientVerifier::new(creds.bundles(), &crypto_provider()).unwrap();
        let stranger = Ca::new(&td("a.org")).unwrap();
        let forged = chain(&issue(&stranger, "spiffe://a.org/web"));
        let now = UnixTime::now();
        for _ in 0..2 {
            assert!(verifier.verify_client_cert(&forged[0], &[], now).is_err());
        }
        assert!(verifier.verified_chains().is_empty());
        let web = chain(&issue(&ca, "spiffe://a.org/web"));
        verifier.verify_client_cert(&web[0], &[], now).unwrap();
        assert!(verifier.verify_client_cert(&forged[0], &[], now).is_err());
        assert!(
            verifier
                .verified_chains()
                .get(&forged[0], &[], now)
                .is_none()
        );
        // The same leaf with an extra certificate behind it is another chain.
        let longer = [web[0].clone()];
        assert!(
            verifier
                .verified_chains()
                .get(&web[0], &longer, now)
                .is_none()
        );
    }

    #[tokio::test]
    async fn new_material_starts_with_nothing_remembered() {
        let (ca, live, server) = server();
        let web = issue(&ca, "spiffe://a.org/web");
        let outcome = handshake(server.clone(), raw_client(&web, &ca, false)).await;
        outcome.server.unwrap();
        assert_eq!(remembered(&live), 1);

        let rekeyed = Ca::new(&td("a.org")).unwrap();
        live.publish(checked(
            &issue(&rekeyed, "spiffe://a.org/api"),
            &[("a.org", &rekeyed)],
        ))
        .unwrap();
        assert_eq!(remembered(&live), 0);
        // The old CA's client is refused although its chain was remembered a moment ago (the
        // new CA has the old one's name, so webpki finds it and the signature fails).
        let outcome = handshake(server, raw_client(&web, &rekeyed, false)).await;
        let error = outcome.server.unwrap_err();
        assert_eq!(
            rustls_error(&error),
            &Error::InvalidCertificate(CertificateError::BadSignature)
        );
    }

    #[tokio::test]
    async fn a_remembered_server_chain_is_still_held_to_each_destination_id() {
        let (ca, _server_live, server) = server();
        let client = credentials(&issue(&ca, "spiffe://a.org/web"), &[("a.org", &ca)]);
        let to_api = client_config(&client, &id("spiffe://a.org/api"), TlsOptions::default());
        let outcome = handshake(server.clone(), to_api.unwrap()).await;
        outcome.client.unwrap();
        assert_eq!(client.current().server_chains().len(), 1);

        let to_billing = client_config(
            &client,
            &id("spiffe://a.org/billing"),
            TlsOptions::default(),
        );
        let outcome = handshake(server, to_billing.unwrap()).await;
        let expected = TlsError::WrongPeerId {
            expected: "spiffe://a.org/billing".into(),
            actual: "spiffe://a.org/api".into(),
        };
        assert_eq!(tls_error(&outcome.client.unwrap_err()), expected);
    }

    #[test]
    fn the_cache_is_bounded() {
        let chains = VerifiedChains::default();
        let svid = Svid {
            id: id("spiffe://a.org/web"),
            not_before: 0,
            not_after: i64::MAX,
        };
        for n in 0..MAX_CHAINS {
            let leaf = CertificateDer::from(n.to_be_bytes().to_vec());
            chains.insert(&leaf, &[], &svid);
        }
        assert_eq!(chains.len(), MAX_CHAINS);
        let one_more = CertificateDer::from(b"one more".to_vec());
        chains.insert(&one_more, &[], &svid);
        assert_eq!(chains.len(), 1, "a full cache is emptied, then refilled");
        assert!(chains.get(&one_more, &[], UnixTime::now()).is_some());
    }
}

/// Chains, not just leaves: our own chain must verify against our own trust domain's bundle
/// when it is loaded (start-up, every rotation), and every intermediate — ours or a peer's —
/// must be a signing certificate (X509-SVID §4.1/§4.3: CA:true, keyCertSign).
mod chains_of_signers {
    use rcgen::CertificateParams;
    use rustls::server::WebPkiClientVerifier;

    use super::*;
    use rustls::pki_types::UnixTime;

    fn load(svid: &IssuedSvid, bundles: &[(&str, &Ca)]) -> Result<Credentials, TlsError> {
        let bundles: Vec<_> = bundles
            .iter()
            .map(|(name, ca)| (td(name), ca.cert_pem()))
            .collect();
        Credentials::from_pem(&svid.chain_pem, &svid.key_pem, &bundles, SystemTime::now())
    }

    fn without_key_cert_sign(params: &mut CertificateParams) {
        params.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    }

    fn without_key_usage(params: &mut CertificateParams) {
        params.key_usages.clear();
    }

    fn not_a_ca(params: &mut CertificateParams) {
        params.is_ca = IsCa::ExplicitNoCa;
    }

    /// The leaf's chain as a peer presents it.
    fn chain(svid: &IssuedSvid) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(svid.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn an_own_chain_through_an_intermediate_loads_against_the_root_bundle() {
        let root = Ca::new(&td("a.org")).unwrap();
        let intermediate = root.intermediate(|_| {}).unwrap();
        let api = issue(&intermediate, "spiffe://a.org/api");
        assert_eq!(chain(&api).len(), 2, "leaf, then the intermediate");
        let creds = load(&api, &[("a.org", &root)]).unwrap();
        assert_eq!(creds.id(), &id("spiffe://a.org/api"));
    }

    #[test]
    fn an_own_chain_that_does_not_verify_against_its_own_bundle_is_refused() {
        let root = Ca::new(&td("a.org")).unwrap();
        let intermediate = root.intermediate(|_| {}).unwrap();
        let stranger = Ca::new(&td("a.org")).unwrap();
        let other_td = Ca::new(&td("b.org")).unwrap();
        let untrusted = |error: TlsError| {
            assert!(
                matches!(&error, TlsError::OwnChainUntrusted { trust_domain, .. } if trust_domain == "a.org"),
                "{error:?}"
            );
            assert_eq!(error.reason(), "own-chain-untrusted");
            assert!(error.to_string().contains("<certificate>"), "{error}");
        };
        // Signed by another a.org CA than the bundle's (a re-keyed CA, a stale bundle).
        let foreign = issue(&stranger, "spiffe://a.org/api");
        untrusted(load(&foreign, &[("a.org", &root)]).unwrap_err());
        // Issued by the intermediate, but the intermediate left out of the file.
        let mut bare = issue(&intermediate, "spiffe://a.org/api");
        bare.chain_pem = bare.cert_pem.clone();
        untrusted(load(&bare, &[("a.org", &root)]).unwrap_err());
        // Our trust domain has no bundle at all: only b.org's.
        let good = issue(&root, "spiffe://a.org/api");
        let error = load(&good, &[("b.org", &other_td)]).unwrap_err();
        assert_eq!(
            error,
            TlsError::OwnTrustDomainUnbundled {
                file: "<certificate>".into(),
                trust_domain: "a.org".into()
            }
        );
        // The same material through the SPIFFE Workload API path (rotation from SPIRE).
        let bundle = Bundle {
            trust_domain: td("a.org"),
            source: "<bundle a.org>".into(),
            certs: vec![CertificateDer::from(root.cert_der().to_vec())],
        };
        let key = PrivateKeyDer::from_pem_slice(foreign.key_pem.as_bytes()).unwrap();
        let error = Credentials::from_der(
            ("<workload api svid>", chain(&foreign)),
            ("<workload api key>", key),
            vec![bundle],
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, TlsError::OwnChainUntrusted { file, .. } if file == "<workload api svid>"),
            "{error:?}"
        );
    }

    #[test]
    fn an_own_chain_with_an_intermediate_that_is_no_signing_certificate_is_refused() {
        let root = Ca::new(&td("a.org")).unwrap();
        type Alter = fn(&mut CertificateParams);
        let rows: [(Alter, SvidError); 3] = [
            (not_a_ca, SvidError::SignerNotCa),
            (without_key_cert_sign, SvidError::SignerWithoutKeyCertSign),
            (without_key_usage, SvidError::SignerWithoutKeyCertSign),
        ];
        for (alter, expected) in rows {
            let intermediate = root.intermediate(alter).unwrap();
            let api = issue(&intermediate, "spiffe://a.org/api");
            let error = load(&api, &[("a.org", &root)]).unwrap_err();
            assert_eq!(
                error,
                TlsError::OwnSigner {
                    file: "<certificate>".into(),
                    position: 2,
                    error: expected,
                }
            );
            assert!(error.to_string().contains("certificate 2"), "{error}");
        }
    }

    /// webpki's path validation alone takes an intermediate without keyCertSign (it checks
    /// CA:true only): why the verifiers run `check_signing_certificate` first.
    #[test]
    fn webpki_alone_would_accept_an_intermediate_without_key_cert_sign() {
        let root = Ca::new(&td("a.org")).unwrap();
        let intermediate = root.intermediate(without_key_cert_sign).unwrap();
        let web = chain(&issue(&intermediate, "spiffe://a.org/web"));
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(root.cert_der().to_vec()))
            .unwrap();
        let parsed = rustls::server::ParsedCertificate::try_from(&web[0]).unwrap();
        let webpki = rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &web[1..],
            UnixTime::now(),
            crypto_provider().signature_verification_algorithms.all,
        );
        assert!(webpki.is_ok(), "webpki now refuses it itself: {webpki:?}");
    }

    #[tokio::test]
    async fn a_peer_chain_through_a_bad_intermediate_fails_the_inbound_handshake() {
        let (root, server) = server_in_a();
        let good = root.intermediate(|_| {}).unwrap();
        let web = issue(&good, "spiffe://a.org/web");
        let outcome = handshake(server.clone(), raw_client(&web, &root, false)).await;
        assert_eq!(outcome.server.unwrap(), id("spiffe://a.org/web"));

        type Alter = fn(&mut CertificateParams);
        let rows: [(Alter, SvidError); 2] = [
            (not_a_ca, SvidError::SignerNotCa),
            (without_key_cert_sign, SvidError::SignerWithoutKeyCertSign),
        ];
        for (alter, expected) in rows {
            let intermediate = root.intermediate(alter).unwrap();
            let web = issue(&intermediate, "spiffe://a.org/web");
            let outcome = handshake(server.clone(), raw_client(&web, &root, false)).await;
            let error = tls_error(&outcome.server.unwrap_err());
            assert_eq!(
                error,
                TlsError::PeerSigner {
                    position: 2,
                    error: expected.clone()
                }
            );
            assert_eq!(error.reason(), expected.reason());
            assert!(outcome.client.is_err(), "the client saw the refusal");
        }
    }

    #[tokio::test]
    async fn an_outbound_server_presenting_a_bad_intermediate_is_refused() {
        let root = Ca::new(&td("a.org")).unwrap();
        let intermediate = root.intermediate(without_key_cert_sign).unwrap();
        let api = issue(&intermediate, "spiffe://a.org/api");
        // A server that presents whatever it holds (our own loader would refuse this chain).
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(root.cert_der().to_vec()))
            .unwrap();
        let clients = WebPkiClientVerifier::builder_with_provider(roots.into(), crypto_provider())
            .build()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(api.key_pem.as_bytes()).unwrap();
        let server = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(clients)
            .with_single_cert(chain(&api), key)
            .unwrap();
        let web = credentials(&issue(&root, "spiffe://a.org/web"), &[("a.org", &root)]);
        let client = client_config(&web, &id("spiffe://a.org/api"), TlsOptions::default());
        let outcome = handshake(Arc::new(server), client.unwrap()).await;
        let expected = TlsError::PeerSigner {
            position: 2,
            error: SvidError::SignerWithoutKeyCertSign,
        };
        assert_eq!(tls_error(&outcome.client.unwrap_err()), expected);
    }
}
