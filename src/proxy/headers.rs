//! Header rules of the request path (docs/security.md): request-smuggling defences on the
//! framing headers, hop-by-hop removal, the identity headers segward sets for the workload,
//! and the forwarded target (URI, Host, `x-request-id`). Pure: std, thiserror, `http`, `bytes`.
//! Applied in this order: [`check_framing`] on the headers as received (an error is a 400),
//! [`strip_hop_by_hop`], [`set_identity_headers`] (after, so a client's
//! `Connection: x-spiffe-id` cannot remove the header segward set), then [`retarget`].

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderName, HeaderValue, InvalidHeaderValue,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Uri, Version};

/// The verified source identity, set by segward (docs/security.md).
pub const X_SPIFFE_ID: HeaderName = HeaderName::from_static("x-spiffe-id");
/// Envoy's `x-forwarded-client-cert`, set by segward as `By=<own ID>;URI=<source ID>`.
pub const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
/// The request id, sent upstream and back to the caller (docs/security.md, §6).
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 §7.6.1, RFC 9112 §6.1 and §7.4) plus the non-standard
/// `Keep-Alive` and `Proxy-Connection`; always removed before forwarding.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Headers a `Connection` option may not remove.
const PROTECTED: [HeaderName; 2] = [HOST, CONTENT_LENGTH];

/// A request whose body framing is ambiguous or unsupported; each is a 400 and nothing is
/// forwarded (docs/security.md: "conflicting `Content-Length`/`Transfer-Encoding` → 400").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    /// HTTP/1.1 request message that … contains more than one Host header field line"; the
    /// proxy and the workload could otherwise read different hosts.
    #[error("request has more than one Host header")]
    MultipleHost,
    /// RFC 9112 §6.3 rule 3: a message with both Transfer-Encoding and Content-Length "might
    /// indicate an attempt to perform request smuggling … and ought to be handled as an
    /// error"; segward rejects it rather than letting Transfer-Encoding win.
    #[error("request has both Content-Length and Transfer-Encoding; send only one")]
    LengthAndTransferEncoding,
    /// RFC 9110 §8.6: `Content-Length = 1*DIGIT`; signs, spaces inside, hex and empty values
    /// are invalid, as is a value too large for a u64 (RFC 9112 §6.3 rule 5).
    #[error("Content-Length is not a plain decimal number")]
    InvalidContentLength,
    /// RFC 9112 §6.3 rule 5: "differing field values" of Content-Length make the length
    /// unrecoverable. Repeated *identical* values (`5, 5` or two `5` lines) are accepted, as
    /// RFC 9110 §8.6 permits.
    #[error("Content-Length has differing values")]
    ConflictingContentLength,
    /// RFC 9112 §6.3 rule 4: "If a Transfer-Encoding header field is present in a request and
    /// the chunked transfer coding is not the final encoding, … the server MUST respond with
    /// the 400 (Bad Request) status code".
    #[error("Transfer-Encoding does not end in `chunked`")]
    ChunkedNotFinal,
    /// RFC 9112 §6.1 lets a server refuse codings it does not understand; segward forwards
    /// only a single `chunked` (RFC 9112 §7: "A sender MUST NOT apply the chunked transfer
    /// coding more than once"), so `gzip, chunked` and `chunked, chunked` are refused.
    #[error("Transfer-Encoding must be exactly `chunked`")]
    NotOnlyChunked,
}

impl HeaderError {
    /// Short, bounded label for metrics and decision logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MultipleHost => "multiple-host",
            Self::LengthAndTransferEncoding => "length-and-transfer-encoding",
            Self::InvalidContentLength => "invalid-content-length",
            Self::ConflictingContentLength => "conflicting-content-length",
            Self::ChunkedNotFinal => "chunked-not-final",
            Self::NotOnlyChunked => "not-only-chunked",
        }
    }
}

/// A forwarded request that cannot be built from what was received; a 400, nothing is
/// forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// RFC 9112 §3.2: the request-target is `absolute-path [ "?" query ]` of URI characters
    /// (RFC 3986 §3.3, §3.4); the normalized path and the query must still be one.
    #[error("the path and query do not form a request-target")]
    InvalidPathAndQuery,
    /// RFC 9110 §7.2: `Host = uri-host [ ":" port ]`, a field value; the authority the
    /// caller addressed must be one.
    #[error("the addressed authority is not a valid Host value")]
    InvalidHost,
    /// RFC 9112 §3.2.2: absolute-form is `scheme "://" authority path [ "?" query ]`; a URI
    /// missing one of them is refused (cannot happen once all three are given).
    #[error("scheme, authority and path do not make an absolute URI")]
    IncompleteUri,
}

impl TargetError {
    /// Short, bounded label for metrics and decision logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidPathAndQuery => "invalid-path-and-query",
            Self::InvalidHost => "invalid-host",
            Self::IncompleteUri => "incomplete-uri",
        }
    }
}

/// Request-smuggling defences of RFC 9112 §3.2 and §6.3 on the headers as received: at most
/// one Host line; at most one of Content-Length and Transfer-Encoding; Content-Length a plain
/// decimal, repeated only with the same value; Transfer-Encoding exactly `chunked`
/// (case-insensitive, RFC 9112 §7).
///
/// # Errors
/// The [`HeaderError`] naming the first rule broken.
pub fn check_framing(headers: &HeaderMap) -> Result<(), HeaderError> {
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Err(HeaderError::MultipleHost);
    }
    let has_length = headers.contains_key(CONTENT_LENGTH);
    let has_coding = headers.contains_key(TRANSFER_ENCODING);
    if has_length && has_coding {
        return Err(HeaderError::LengthAndTransferEncoding);
    }
    if has_length {
        check_content_length(headers)?;
    }
    if has_coding {
        check_transfer_encoding(headers)?;
    }
    Ok(())
}

/// Every element of every Content-Length line must be `1*DIGIT`, and all must be equal.
fn check_content_length(headers: &HeaderMap) -> Result<(), HeaderError> {
    let mut seen: Option<u64> = None;
    for element in list_elements(headers, &CONTENT_LENGTH) {
        let length = parse_decimal(element).ok_or(HeaderError::InvalidContentLength)?;
        match seen {
            Some(first) if first != length => return Err(HeaderError::ConflictingContentLength),
            _ => seen = Some(length),
        }
    }
    Ok(())
}

/// `1*DIGIT` into a u64; `None` for anything else, including overflow.
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &byte| {
        let digit = char::from(byte).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The codings of all Transfer-Encoding lines, in order, must be exactly one `chunked`.
fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), HeaderError> {
    let codings: Vec<&[u8]> = list_elements(headers, &TRANSFER_ENCODING).collect();
    match codings.as_slice() {
        [only] if is_chunked(only) => Ok(()),
        [.., last] if is_chunked(last) => Err(HeaderError::NotOnlyChunked),
        _ => Err(HeaderError::ChunkedNotFinal),
    }
}

/// Transfer-coding names are case-insensitive (RFC 9112 §7).
fn is_chunked(coding: &[u8]) -> bool {
    coding.eq_ignore_ascii_case(b"chunked")
}

/// The comma-separated elements of every line of `name`, with optional whitespace trimmed
/// (RFC 9110 §5.6.1). Empty elements are kept, so `5,` yields an invalid empty length.
fn list_elements<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a [u8]> + use<'a> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(trim_ows)
}

/// Trims `OWS = *( SP / HTAB )` from both ends.
fn trim_ows(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): Connection, Keep-Alive,
/// Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer,
/// Transfer-Encoding, Upgrade, and every header a `Connection` line names ("a proxy or
/// gateway MUST … remove any header or trailer field(s) … listed as connection options").
/// Names are case-insensitive; invalid names are ignored. `Host` and `Content-Length` are
/// never removed this way: RFC 9110 §7.6.1 forbids listing them, and dropping them on a
/// client's word would change which resource and how much body the upstream sees.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present; most requests carry none of these (the common case
    // costs a scan, not nine hash lookups).
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name))
        .cloned()
        .collect();
    if present.is_empty() {
        return;
    }
    let nominated: Vec<HeaderName> = list_elements(headers, &CONNECTION)
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .filter(|name| !PROTECTED.contains(name))
        .collect();
    for name in nominated.iter().chain(present.iter()) {
        headers.remove(name);
    }
}

/// The values segward sets for one peer: `x-spiffe-id: <source_id>` and Envoy's
/// `x-forwarded-client-cert: By=<own_id>;URI=<source_id>`. A connection's peer never changes,
/// so the inbound side builds them once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    spiffe_id: HeaderValue,
    xfcc: HeaderValue,
}

impl IdentityHeaders {
    /// The values for `source_id` reaching `own_id`. Both must be validated SPIFFE IDs; their
    /// charset needs no XFCC quoting.
    ///
    /// # Errors
    /// An ID that is not a valid header value (impossible for a validated SPIFFE ID).
    pub fn new(own_id: &str, source_id: &str) -> Result<Self, InvalidHeaderValue> {
        Ok(Self {
            spiffe_id: HeaderValue::from_str(source_id)?,
            xfcc: HeaderValue::from_str(&format!("By={own_id};URI={source_id}"))?,
        })
    }

    /// Replaces whatever the client sent as `x-spiffe-id` and `x-forwarded-client-cert`
    /// (every value) with exactly one of each (docs/security.md).
    pub fn apply(&self, headers: &mut HeaderMap) {
        // insert() drops every value the client sent under these names.
        headers.insert(X_SPIFFE_ID, self.spiffe_id.clone());
        headers.insert(X_FORWARDED_CLIENT_CERT, self.xfcc.clone());
    }
}

/// Replaces whatever the client sent as `x-spiffe-id` and `x-forwarded-client-cert` (every
/// value) with exactly one of each: `x-spiffe-id: <source_id>` and Envoy's
/// `x-forwarded-client-cert: By=<own_id>;URI=<source_id>` (docs/security.md).
///
/// Both IDs must be validated SPIFFE IDs; their charset needs no XFCC quoting. The client's
/// values are removed first, so even on error no spoofed header survives.
///
/// # Errors
/// An ID that is not a valid header value.
pub fn set_identity_headers(
    headers: &mut HeaderMap,
    own_id: &str,
    source_id: &str,
) -> Result<(), InvalidHeaderValue> {
    headers.remove(&X_SPIFFE_ID);
    headers.remove(&X_FORWARDED_CLIENT_CERT);
    IdentityHeaders::new(own_id, source_id)?.apply(headers);
    Ok(())
}

/// Points `req` at `scheme://authority` with `path` (the path that was matched, so the same
/// one is forwarded) and the original query, names what the caller addressed in `Host`, and
/// sets `x-request-id: <request_id>`. The version becomes HTTP/1.1: the upstream connection,
/// not the request, picks HTTP/1.1 or h2.
///
/// # Errors
/// [`TargetError`] if the parts do not make a request; `req` is then not to be sent.
pub fn retarget<B>(
    req: &mut Request<B>,
    path: &str,
    scheme: Scheme,
    authority: &Authority,
    request_id: &HeaderValue,
) -> Result<(), TargetError> {
    let target = match req.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let path_and_query = PathAndQuery::from_maybe_shared(Bytes::from(target))
        .map_err(|_| TargetError::InvalidPathAndQuery)?;
    carry_host(req)?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(path_and_query);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| TargetError::IncompleteUri)?;
    *req.version_mut() = Version::HTTP_11;
    req.headers_mut().insert(X_REQUEST_ID, request_id.clone());
    Ok(())
}

/// Sets `Host` from the URI's authority where the forwarded request needs it. HTTP/1.1
/// absolute-form: the target's authority replaces any Host line (RFC 9112 §3.2.2: a proxy
/// "MUST … replace the Host field value with the host information of that request-target").
/// HTTP/2: `:authority` stands in for a missing Host; a Host line is kept, because segward's
/// own outbound side sends the name the app addressed there while `:authority` names the
/// sidecar it connected to.
fn carry_host<B>(req: &mut Request<B>) -> Result<(), TargetError> {
    let Some(authority) = req.uri().authority() else {
        return Ok(());
    };
    let absolute_form = req.version() < Version::HTTP_2;
    if absolute_form || !req.headers().contains_key(HOST) {
        // Never carry `user@` on: Host is host[:port] only.
        let host = authority.as_str();
        let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
        let host = HeaderValue::from_str(host).map_err(|_| TargetError::InvalidHost)?;
        req.headers_mut().insert(HOST, host);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
