//! Request ids: one per request, sent back as `x-request-id` and written to the decision log,
//! so an operator can go from a 403 to its log line (docs/security.md, §6). A well-formed id the
//! caller sent is kept (the outbound sidecar's id then names the request on both sides).

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderMap;
use http::header::HeaderValue;
use ring::rand::{SecureRandom, SystemRandom};

use super::headers::X_REQUEST_ID;

/// Longest caller-sent id kept; longer ones are replaced.
const MAX_LEN: usize = 128;

/// Makes request ids: a random per-process prefix and a counter (unique, cheap, sortable).
#[derive(Debug)]
pub struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    /// A generator with a fresh random prefix.
    pub fn new() -> Self {
        let mut prefix = [0u8; 4];
        // Without randomness the ids stay unique per process, which is all they must be.
        let _ = SystemRandom::new().fill(&mut prefix);
        Self {
            prefix: u32::from_be_bytes(prefix),
            next: AtomicU64::new(1),
        }
    }

    /// The caller's `x-request-id` if it is 1–128 characters of `[A-Za-z0-9._:-]`, else a new id.
    pub fn take(&self, headers: &HeaderMap) -> HeaderValue {
        match headers.get(&X_REQUEST_ID) {
            Some(sent) if acceptable(sent.as_bytes()) => sent.clone(),
            _ => self.fresh(),
        }
    }

    /// A new id, whatever the caller sent (a TCP connection has no headers).
    pub fn fresh(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let text = format!("{:08x}{n:016x}", self.prefix);
        // Invariant: hex digits are always a valid header value.
        HeaderValue::from_maybe_shared(Bytes::from(text)).unwrap_or(HeaderValue::from_static("-"))
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

fn acceptable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_str(id).unwrap());
        headers
    }

    #[test]
    fn fresh_ids_are_unique_and_24_hex_digits() {
        let ids = RequestIds::new();
        let (a, b) = (ids.take(&HeaderMap::new()), ids.take(&HeaderMap::new()));
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_well_formed_caller_id_is_kept() {
        let ids = RequestIds::new();
        let id = "3f1c9a2e-7b4d-4c1e-9f00-1a2b3c4d5e6f";
        assert_eq!(ids.take(&with(id)), id);
    }

    #[test]
    fn a_hostile_or_oversized_caller_id_is_replaced() {
        let ids = RequestIds::new();
        for bad in ["a b", "x\"y", "{}", "", &"a".repeat(129)] {
            let taken = ids.take(&with(bad));
            assert_ne!(taken, bad);
            assert_eq!(taken.len(), 24, "{bad:?}");
        }
    }
}
