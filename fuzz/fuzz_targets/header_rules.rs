//! The header rules of `proxy::headers` on arbitrary header lists: `check_framing` (RFC 9112
//! request-smuggling defences) and `strip_hop_by_hop` (RFC 9110 §7.6.1). Input: lines of
//! `name: value` (split at the first `:`), each kept only if `http` accepts it, as hyper would.
//! Asserted: no panic; after stripping no hop-by-hop header and no header a `Connection` line
//! named remains, while `Host` and `Content-Length` are never removed; `check_framing` is
//! deterministic and a framing it accepts has at most one Host and never both
//! Content-Length and Transfer-Encoding.
#![no_main]

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use libfuzzer_sys::fuzz_target;
use segward::proxy::headers::{check_framing, strip_hop_by_hop};

const HOP_BY_HOP: &[&str] = &[
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

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let framing = check_framing(&headers);
    assert_eq!(framing, check_framing(&headers));
    if framing.is_ok() {
        assert!(headers.get_all(HOST).iter().count() <= 1);
        assert!(!(headers.contains_key(CONTENT_LENGTH) && headers.contains_key(TRANSFER_ENCODING)));
    }
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|n| std::str::from_utf8(n.trim_ascii()).ok())
        .map(str::to_ascii_lowercase)
        .filter(|n| HeaderName::from_bytes(n.as_bytes()).is_ok())
        .collect();
    let hosts = headers.get_all(HOST).iter().count();
    let lengths = headers.get_all(CONTENT_LENGTH).iter().count();
    strip_hop_by_hop(&mut headers);
    for name in HOP_BY_HOP {
        assert!(!headers.contains_key(*name), "{name} survived");
    }
    for name in &named {
        if name != "host" && name != "content-length" {
            assert!(
                !headers.contains_key(name.as_str()),
                "{name} named by Connection survived"
            );
        }
    }
    assert_eq!(headers.get_all(HOST).iter().count(), hosts, "Host removed");
    assert_eq!(
        headers.get_all(CONTENT_LENGTH).iter().count(),
        lengths,
        "Content-Length removed"
    );
});
