//! Table tests for the header rules, one row per rule.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Version};

use super::*;

const OWN: &str = "spiffe://prod.example/ns/payments/sa/api";
const SOURCE: &str = "spiffe://prod.example/ns/web/sa/frontend";

/// Builds a map from (name, value) rows; names may be mixed case, repeats append.
fn map(rows: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in rows {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("test header name");
        headers.append(
            name,
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    headers
}

/// (rule, headers, expected)
type FramingRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Result<(), HeaderError>,
);

const FRAMING: &[FramingRow] = &[
    ("no body headers", &[("host", "a")], Ok(())),
    (
        "two Host lines",
        &[("host", "a"), ("Host", "b")],
        Err(HeaderError::MultipleHost),
    ),
    (
        "two identical Host lines",
        &[("host", "a"), ("host", "a")],
        Err(HeaderError::MultipleHost),
    ),
    ("Content-Length only", &[("content-length", "42")], Ok(())),
    ("Content-Length zero", &[("content-length", "0")], Ok(())),
    (
        "Content-Length with OWS",
        &[("content-length", " 7 ")],
        Ok(()),
    ),
    (
        "identical repeated lines",
        &[("content-length", "5"), ("Content-Length", "5")],
        Ok(()),
    ),
    ("identical list", &[("content-length", "5, 5")], Ok(())),
    ("chunked only", &[("transfer-encoding", "chunked")], Ok(())),
    (
        "chunked any case",
        &[("Transfer-Encoding", "Chunked")],
        Ok(()),
    ),
    (
        "Content-Length and Transfer-Encoding",
        &[("content-length", "5"), ("transfer-encoding", "chunked")],
        Err(HeaderError::LengthAndTransferEncoding),
    ),
    (
        "two differing lines",
        &[("content-length", "5"), ("content-length", "6")],
        Err(HeaderError::ConflictingContentLength),
    ),
    (
        "differing list `1,2`",
        &[("content-length", "1,2")],
        Err(HeaderError::ConflictingContentLength),
    ),
    (
        "sign `+5`",
        &[("content-length", "+5")],
        Err(HeaderError::InvalidContentLength),
    ),
    (
        "negative `-1`",
        &[("content-length", "-1")],
        Err(HeaderError::InvalidContentLength),
    ),
    (
        "letters `abc`",
        &[("content-length", "abc")],
        Err(HeaderError::InvalidContentLength),
    ),
    (
        "hex `0x5`",
        &[("content-length", "0x5")],
        Err(HeaderError::InvalidContentLength),
    ),
    (
        "inner space `1 2`",
        &[("content-length", "1 2")],
        Err(HeaderError::InvalidContentLength),
    ),
    (
        "empty",
        &[("content-length", "")],
        Err(HeaderError::InvalidContentLength),
    ),
    (
        "trailing comma `5,`",
        &[("content-length", "5,")],
        Err(HeaderError::InvalidContentLength),
    ),
    (
        "overflows u64",
        &[("content-length", "18446744073709551616")],
        Err(HeaderError::InvalidContentLength),
    ),
    (
        "`gzip, chunked`",
        &[("transfer-encoding", "gzip, chunked")],
        Err(HeaderError::NotOnlyChunked),
    ),
    (
        "`chunked, chunked`",
        &[("transfer-encoding", "chunked, chunked")],
        Err(HeaderError::NotOnlyChunked),
    ),
    (
        "chunked on two lines",
        &[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ],
        Err(HeaderError::NotOnlyChunked),
    ),
    (
        "`identity`",
        &[("transfer-encoding", "identity")],
        Err(HeaderError::ChunkedNotFinal),
    ),
    (
        "`chunked, gzip`",
        &[("transfer-encoding", "chunked, gzip")],
        Err(HeaderError::ChunkedNotFinal),
    ),
    (
        "empty Transfer-Encoding",
        &[("transfer-encoding", "")],
        Err(HeaderError::ChunkedNotFinal),
    ),
    (
        "`chunkedx`",
        &[("transfer-encoding", "chunkedx")],
        Err(HeaderError::ChunkedNotFinal),
    ),
];

#[test]
fn check_framing_follows_rfc_9112() {
    for (rule, rows, expected) in FRAMING {
        assert_eq!(check_framing(&map(rows)), *expected, "{rule}");
    }
}

#[test]
fn reasons_are_distinct() {
    let framing = [
        HeaderError::MultipleHost,
        HeaderError::LengthAndTransferEncoding,
        HeaderError::InvalidContentLength,
        HeaderError::ConflictingContentLength,
        HeaderError::ChunkedNotFinal,
        HeaderError::NotOnlyChunked,
    ]
    .map(|error| error.reason());
    let target = [
        TargetError::InvalidPathAndQuery,
        TargetError::InvalidHost,
        TargetError::IncompleteUri,
    ]
    .map(|error| error.reason());
    let reasons: Vec<_> = framing.iter().chain(&target).collect();
    let unique: std::collections::HashSet<_> = reasons.iter().collect();
    assert_eq!(unique.len(), reasons.len());
}

const HOP_BY_HOP_NAMES: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[test]
fn strip_hop_by_hop_removes_each_listed_header() {
    for name in HOP_BY_HOP_NAMES {
        let mut headers = map(&[(name, "x"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut headers);
        assert!(!headers.contains_key(*name), "{name} kept");
        assert_eq!(headers.len(), 1, "{name}: end-to-end header lost");
    }
}

#[test]
fn strip_hop_by_hop_removes_headers_named_by_connection() {
    let mut headers = map(&[
        ("Connection", "close, X-Secret"),
        ("connection", " x-other ,, bad name"),
        ("x-secret", "1"),
        ("X-Secret", "2"),
        ("x-other", "3"),
        ("accept", "*/*"),
        ("content-type", "text/plain"),
        ("authorization", "Bearer t"),
    ]);
    strip_hop_by_hop(&mut headers);
    let mut kept: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    kept.sort_unstable();
    assert_eq!(kept, ["accept", "authorization", "content-type"]);
}

#[test]
fn set_identity_headers_replaces_client_values() {
    let mut headers = map(&[
        ("x-spiffe-id", "spiffe://evil.example/admin"),
        ("X-Spiffe-Id", "spiffe://evil.example/root"),
        (
            "X-Forwarded-Client-Cert",
            "By=spiffe://evil.example/x;URI=spiffe://evil.example/y",
        ),
        ("accept", "*/*"),
    ]);
    set_identity_headers(&mut headers, OWN, SOURCE).expect("valid IDs");

    let ids: Vec<_> = headers.get_all("x-spiffe-id").iter().collect();
    assert_eq!(ids, [SOURCE]);
    let xfcc: Vec<_> = headers.get_all("x-forwarded-client-cert").iter().collect();
    assert_eq!(xfcc, [format!("By={OWN};URI={SOURCE}").as_str()]);
    assert_eq!(headers.len(), 3);
}

#[test]
fn set_identity_headers_sets_them_when_absent() {
    let mut headers = HeaderMap::new();
    set_identity_headers(&mut headers, OWN, SOURCE).expect("valid IDs");
    assert_eq!(headers[&X_SPIFFE_ID], SOURCE);
    assert_eq!(
        headers[&X_FORWARDED_CLIENT_CERT],
        format!("By={OWN};URI={SOURCE}").as_str()
    );
}

#[test]
fn set_identity_headers_fails_closed_on_a_bad_value() {
    let mut headers = map(&[
        ("x-spiffe-id", "spoofed"),
        ("x-forwarded-client-cert", "spoofed"),
    ]);
    assert!(set_identity_headers(&mut headers, OWN, "bad\nid").is_err());
    assert!(
        headers.is_empty(),
        "spoofed headers must not survive an error"
    );
}

#[test]
fn connection_cannot_remove_host_or_content_length() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "connection",
        HeaderValue::from_static("host, content-length, x-a"),
    );
    headers.insert("host", HeaderValue::from_static("payments"));
    headers.insert("content-length", HeaderValue::from_static("5"));
    headers.insert("x-a", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut headers);
    assert_eq!(headers.get("host").unwrap(), "payments");
    assert_eq!(headers.get("content-length").unwrap(), "5");
    assert!(headers.get("x-a").is_none() && headers.get("connection").is_none());
}

const UPSTREAM: &str = "10.0.0.7:8443";
const REQUEST_ID: &str = "req-1";

/// A request as received: `uri` in any form, `version`, and its Host line if any.
fn received(uri: &str, version: Version, host: Option<&str>) -> http::Request<()> {
    let mut builder = http::Request::builder().uri(uri).version(version);
    if let Some(host) = host {
        builder = builder.header("host", host);
    }
    builder.body(()).expect("test request")
}

/// `req` after [`retarget`] to `https://UPSTREAM` with `path`.
fn retargeted(mut req: http::Request<()>, path: &str) -> Result<http::Request<()>, TargetError> {
    let authority = http::uri::Authority::from_static(UPSTREAM);
    let id = HeaderValue::from_static(REQUEST_ID);
    retarget(&mut req, path, http::uri::Scheme::HTTPS, &authority, &id)?;
    Ok(req)
}

fn host(req: &http::Request<()>) -> Vec<&str> {
    let values = req.headers().get_all("host").iter();
    values.map(|v| v.to_str().expect("ascii host")).collect()
}

/// (rule, target as received, version, Host received, Host forwarded)
type HostRow = (
    &'static str,
    &'static str,
    Version,
    Option<&'static str>,
    &'static str,
);

const HOST_RULES: &[HostRow] = &[
    (
        "origin-form keeps Host",
        "/v1/x?q=1",
        Version::HTTP_11,
        Some("payments"),
        "payments",
    ),
    (
        "RFC 9112 §3.2.2: absolute-form replaces Host",
        "http://payments:8080/v1/x?q=1",
        Version::HTTP_11,
        Some("evil"),
        "payments:8080",
    ),
    (
        "absolute-form without Host",
        "http://payments/a/../v1/x?q=1",
        Version::HTTP_11,
        None,
        "payments",
    ),
    (
        "h2 keeps its Host line",
        "https://sidecar:15001/v1/x?q=1",
        Version::HTTP_2,
        Some("payments"),
        "payments",
    ),
    (
        "h2 without Host: :authority",
        "https://sidecar:15001/v1/x?q=1",
        Version::HTTP_2,
        None,
        "sidecar:15001",
    ),
    (
        "userinfo never reaches Host",
        "http://u:pw@payments/v1/x?q=1",
        Version::HTTP_11,
        None,
        "payments",
    ),
];

#[test]
fn retarget_forwards_the_matched_path_and_names_the_addressed_host() {
    for (rule, uri, version, sent, forwarded) in HOST_RULES {
        let req = retargeted(received(uri, *version, *sent), "/v1/x").expect(rule);
        assert_eq!(host(&req), [*forwarded], "{rule}");
        assert_eq!(
            req.uri(),
            "https://10.0.0.7:8443/v1/x?q=1",
            "{rule}: query kept"
        );
        assert_eq!(
            req.version(),
            Version::HTTP_11,
            "{rule}: the pool picks the version"
        );
        assert_eq!(req.headers()[&X_REQUEST_ID], REQUEST_ID, "{rule}");
    }
}

#[test]
fn a_path_that_is_not_a_request_target_is_refused() {
    let req = received("/x?q=1", Version::HTTP_11, Some("payments"));
    assert_eq!(
        retargeted(req, "/a b").map(|_| ()),
        Err(TargetError::InvalidPathAndQuery)
    );
}
