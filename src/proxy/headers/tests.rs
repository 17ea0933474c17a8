//! Table tests for the header rules, one row per rule.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

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
    let reasons = [
        HeaderError::MultipleHost,
        HeaderError::LengthAndTransferEncoding,
        HeaderError::InvalidContentLength,
        HeaderError::ConflictingContentLength,
        HeaderError::ChunkedNotFinal,
        HeaderError::NotOnlyChunked,
    ]
    .map(|error| error.reason());
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
