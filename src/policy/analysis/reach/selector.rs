//! The `--from` / `--to` selectors of a reach query (docs/blast-radius.md): `*`, a SPIFFE ID, an ID
//! pattern, `k=v[,k=v…]` labels or a segment name, read against one policy so that a name it
//! does not define is an error with the closest defined name as a hint.

use std::collections::BTreeMap;

use crate::identity::SpiffeId;
use crate::policy::compiled::CompiledPolicy;
use crate::policy::pattern::IdentityPattern;
use crate::policy::validate::closest_name;

/// A `--from` / `--to` selector (docs/blast-radius.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One SPIFFE ID.
    Id(SpiffeId),
    /// Every identity an ID pattern can match.
    Pattern(IdentityPattern),
    /// Every identity of a segment, by id.
    Segment(u32),
    /// Every identity of the segments carrying all these labels (ids ascending).
    Labels(BTreeMap<String, String>, Vec<u32>),
    /// `*`: every identity.
    Any,
}

/// A selector that names nothing the policy knows, or is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl Selector {
    /// Reads a selector: `*`, a SPIFFE ID, an ID pattern (with `*` or `**`), `k=v[,k=v…]`,
    /// or a segment name.
    ///
    /// # Errors
    /// A message naming the problem and, for an unknown segment, the closest defined name.
    pub fn parse(policy: &CompiledPolicy, text: &str) -> Result<Self, SelectorError> {
        let text = text.trim();
        let fail = |m: String| Err(SelectorError(m));
        if text == "*" {
            return Ok(Self::Any);
        }
        if text.starts_with("spiffe://") {
            if text.contains('*') {
                return IdentityPattern::parse(text)
                    .map(Self::Pattern)
                    .or_else(|e| fail(format!("`{text}` is not a valid ID pattern: {e}")));
            }
            return match SpiffeId::parse(text) {
                Ok(id) if id.path().is_empty() => fail(format!(
                    "`{text}` is a trust domain, not a workload; did you mean `{text}/**`?"
                )),
                Ok(id) => Ok(Self::Id(id)),
                Err(e) => fail(format!("`{text}` is not a valid SPIFFE ID: {e}")),
            };
        }
        if text.contains('=') {
            return Self::labels(policy, text);
        }
        if text.contains("://") || text.is_empty() {
            return fail(format!(
                "`{text}` is not a selector: give a SPIFFE ID (spiffe://…), an ID pattern, a \
                 segment name, `k=v` labels or `*`"
            ));
        }
        Self::segment(policy, text)
    }

    /// A segment name, or an error naming the closest defined one.
    fn segment(policy: &CompiledPolicy, text: &str) -> Result<Self, SelectorError> {
        if let Some(s) = policy.segment_id(text) {
            return Ok(Self::Segment(s));
        }
        let names = policy.segments.iter().map(|s| s.name.as_str());
        let hint = match closest_name(text, names) {
            Some(n) => format!("; did you mean `{n}`?"),
            None => String::new(),
        };
        Err(SelectorError(format!("no segment named `{text}`{hint}")))
    }

    /// `k=v,k2=v2`: every segment carrying all those labels.
    fn labels(policy: &CompiledPolicy, text: &str) -> Result<Self, SelectorError> {
        let labels = parse_labels(text)?;
        let members: Vec<u32> = (0..policy.segments.len() as u32)
            .filter(|s| {
                let have = &policy.segments[*s as usize].labels;
                labels.iter().all(|(k, v)| have.get(k) == Some(v))
            })
            .collect();
        if members.is_empty() {
            return Err(SelectorError(format!(
                "no segment carries `{text}` ({})",
                label_hints(policy, &labels)
            )));
        }
        Ok(Self::Labels(labels, members))
    }
}

/// `k=v,k2=v2` as a map; each part must be `key=value`, each key given once.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, SelectorError> {
    let mut labels = BTreeMap::new();
    for part in text.split(',').map(str::trim) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(SelectorError(format!(
                "`{part}` in `{text}` is not `key=value`"
            )));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() || v.contains('=') {
            return Err(SelectorError(format!(
                "`{part}` in `{text}` is not `key=value`"
            )));
        }
        if labels.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(SelectorError(format!(
                "label `{k}` is given twice in `{text}`"
            )));
        }
    }
    Ok(labels)
}

/// For labels no segment carries together: the values each key does have, `; `-joined.
fn label_hints(policy: &CompiledPolicy, labels: &BTreeMap<String, String>) -> String {
    let known = |k: &str| {
        let mut values: Vec<&str> = policy
            .segments
            .iter()
            .filter_map(|s| s.labels.get(k).map(String::as_str))
            .collect();
        values.sort_unstable();
        values.dedup();
        values
    };
    let hints: Vec<String> = labels
        .keys()
        .map(|k| match known(k).as_slice() {
            [] => format!("no segment has a `{k}` label"),
            vs => format!("`{k}` is one of {}", vs.join(", ")),
        })
        .collect();
    hints.join("; ")
}
