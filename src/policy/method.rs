//! `MethodSet`: the `methods:` of a rule as a bit set over the standard methods plus a
//! short list of extension methods (docs/policy-language.md: "Methods are upper-case tokens; `HEAD`
//! is not implied by `GET`").
//!
//! Policies write methods in upper case, but a *request's* method is matched ignoring ASCII
//! case: upstreams such as Express or Flask route `delete` to their DELETE handler, so a
//! deny on `DELETE` must also refuse `delete` (and an allow on `GET` then admits `get`).

/// The methods with a bit of their own; anything else is an extension method.
const STANDARD: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A request method, classified once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodBit(u16);

impl MethodBit {
    /// The bit of a standard method (any ASCII case), or 0 for an extension method.
    pub fn of(method: &str) -> Self {
        let position = STANDARD.iter().position(|m| m.eq_ignore_ascii_case(method));
        Self(position.map_or(0, |i| 1 << i))
    }
}

/// A set of methods, matched without allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MethodSet {
    bits: u16,
    extensions: Vec<Box<str>>,
}

impl MethodSet {
    /// Adds a method token.
    ///
    /// # Errors
    /// A hint (to append to the error message) when `method` is not an upper-case token.
    pub fn insert(&mut self, method: &str) -> Result<(), String> {
        if method.is_empty() || !method.bytes().all(is_tchar) {
            return Err(String::new());
        }
        if method.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(format!(" (write `{}`)", method.to_ascii_uppercase()));
        }
        match MethodBit::of(method) {
            MethodBit(0) if !self.extensions.iter().any(|m| &**m == method) => {
                self.extensions.push(method.into());
                self.extensions.sort();
            }
            MethodBit(bit) => self.bits |= bit,
        }
        Ok(())
    }

    /// Whether the request method (classified as `bit`) is in the set.
    pub fn contains(&self, bit: MethodBit, method: &str) -> bool {
        if bit.0 != 0 {
            self.bits & bit.0 != 0
        } else {
            self.extensions
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
        }
    }

    /// Whether every method of `other` is in `self`.
    pub fn covers(&self, other: &MethodSet) -> bool {
        other.bits & !self.bits == 0 && other.extensions.iter().all(|m| self.extensions.contains(m))
    }

    /// Whether some method is in both sets.
    pub fn overlaps(&self, other: &MethodSet) -> bool {
        self.bits & other.bits != 0 || other.extensions.iter().any(|m| self.extensions.contains(m))
    }

    /// The methods, standard ones first in a fixed order.
    pub fn names(&self) -> Vec<&str> {
        let standard = STANDARD
            .iter()
            .enumerate()
            .filter(|(i, _)| self.bits & (1 << i) != 0);
        standard
            .map(|(_, m)| *m)
            .chain(self.extensions.iter().map(|m| &**m))
            .collect()
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_not_implied_by_get() {
        let mut set = MethodSet::default();
        set.insert("GET").unwrap();
        assert!(set.contains(MethodBit::of("GET"), "GET"));
        assert!(!set.contains(MethodBit::of("HEAD"), "HEAD"));
    }

    #[test]
    fn request_methods_match_whatever_their_case() {
        let mut set = MethodSet::default();
        set.insert("DELETE").unwrap();
        set.insert("PURGE").unwrap();
        for m in ["DELETE", "delete", "Delete", "PURGE", "purge"] {
            assert!(set.contains(MethodBit::of(m), m), "{m}");
        }
        assert!(!set.contains(MethodBit::of("deletex"), "deletex"));
    }

    #[test]
    fn extension_methods_match_exactly() {
        let mut set = MethodSet::default();
        set.insert("PROPFIND").unwrap();
        assert!(set.contains(MethodBit::of("PROPFIND"), "PROPFIND"));
        assert!(!set.contains(MethodBit::of("PROPPATCH"), "PROPPATCH"));
        assert!(!set.contains(MethodBit::of("GET"), "GET"));
        assert_eq!(set.names(), ["PROPFIND"]);
    }

    #[test]
    fn lower_case_and_non_tokens_are_refused_with_a_hint() {
        let mut set = MethodSet::default();
        assert_eq!(set.insert("get"), Err(" (write `GET`)".to_owned()));
        assert_eq!(set.insert("GE T"), Err(String::new()));
        assert_eq!(set.insert(""), Err(String::new()));
    }

    #[test]
    fn covers_and_overlaps_compare_sets() {
        let set = |ms: &[&str]| {
            let mut s = MethodSet::default();
            ms.iter().for_each(|m| s.insert(m).unwrap());
            s
        };
        assert!(set(&["GET", "POST", "X"]).covers(&set(&["POST", "X"])));
        assert!(!set(&["GET"]).covers(&set(&["GET", "HEAD"])));
        assert!(set(&["GET"]).overlaps(&set(&["GET", "HEAD"])));
        assert!(!set(&["GET"]).overlaps(&set(&["POST"])));
    }
}
