//! One `FetchX509SVID` response → our checked [`Credentials`]: the same checks as files get.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{Update, pb};
use crate::identity::{SpiffeId, TrustDomain};
use crate::tls::{Bundle, Credentials, TlsError};

/// Checks one response: its first SVID is ours (`spiffe_id` must be the leaf's URI SAN), with
/// our trust domain's `bundle`; each `federated_bundles` entry, keyed by the foreign trust
/// domain (`spiffe://name` or `name`), adds that trust domain. Every certificate and the key
/// pass the same checks as files do.
///
/// # Errors
/// [`TlsError::BadSvidResponse`] for a response that is not well formed, else the
/// [`Credentials`] check that failed.
pub fn credentials_from(response: &pb::X509svidResponse, now: SystemTime) -> Update {
    let bad = |problem: String| TlsError::BadSvidResponse { problem };
    let svid = response
        .svids
        .first()
        .ok_or_else(|| bad("the response carries no X509-SVID".to_owned()))?;
    let id = SpiffeId::parse(&svid.spiffe_id)
        .map_err(|e| bad(format!("spiffe_id `{}`: {e}", svid.spiffe_id)))?;
    let chain = certificates(&svid.x509_svid).map_err(|e| bad(format!("x509_svid: {e}")))?;
    let own_td = TrustDomain::parse(id.trust_domain())
        .map_err(|e| bad(format!("spiffe_id `{}`: {e}", svid.spiffe_id)))?;
    let mut bundles = vec![bundle(own_td.clone(), "bundle", &svid.bundle)?];
    let federated: BTreeMap<&str, &[u8]> = response
        .federated_bundles
        .iter()
        .map(|(name, der)| (name.as_str(), der.as_ref()))
        .collect();
    for (name, der) in federated {
        let td = TrustDomain::parse(name.strip_prefix("spiffe://").unwrap_or(name))
            .map_err(|e| bad(format!("federated_bundles key `{name}`: {e}")))?;
        if td == own_td {
            // Ours comes with the SVID; a second copy would make it unclear which vouches.
            tracing::warn!(trust_domain = %td, "federated bundle for our own trust domain ignored");
            continue;
        }
        bundles.push(bundle(td, "federated_bundles", der)?);
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.x509_svid_key.clone()));
    let credentials = Credentials::from_der(
        ("<workload API x509_svid>", chain),
        ("<workload API x509_svid_key>", key),
        bundles,
        now,
    )?;
    if credentials.id() != &id {
        return Err(bad(format!(
            "spiffe_id says {id}, but the certificate's URI SAN is {}",
            credentials.id()
        )));
    }
    Ok(credentials)
}

fn bundle(trust_domain: TrustDomain, field: &str, der: &[u8]) -> Result<Bundle, TlsError> {
    let problem = |what: String| TlsError::BadSvidResponse {
        problem: format!("{field} for {trust_domain}: {what}"),
    };
    let certs = certificates(der).map_err(problem)?;
    if certs.is_empty() {
        return Err(problem("holds no CA certificate".to_owned()));
    }
    Ok(Bundle {
        source: format!("<workload API {field} {trust_domain}>"),
        trust_domain,
        certs,
    })
}

/// Splits concatenated DER certificates (the Workload API's encoding of chains and
/// bundles), each parsed whole.
fn certificates(mut der: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    while !der.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate {} is not DER X.509: {e}", certs.len() + 1))?;
        let (one, _) = der.split_at(der.len() - rest.len());
        certs.push(CertificateDer::from(one.to_vec()));
        der = rest;
    }
    Ok(certs)
}
