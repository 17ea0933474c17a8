//! Serde types mirroring the policy YAML of docs/policy-language.md one to one. Every struct denies
//! unknown keys, and every value an error may point at is `Spanned` so messages can name
//! file:line:col. Nothing here is validated beyond its YAML shape: `compile.rs` does that.
//!
//! [`Spanned`] is this module's own, 8 bytes of line and column beside the value, read through
//! serde-saphyr's location protocol (which the fast path of `fast_yaml` speaks too):
//! serde-saphyr's own `Spanned` carries two locations with character and byte spans, 56 bytes,
//! which made a parsed 50k-rule fleet ~24 MB larger (docs/performance.md, "Fleet-scale
//! policy").

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

/// A value with where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it is written (for an alias, where the alias is).
    pub referenced: Location,
}

/// A 1-based line and column (in characters); 0 when unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Location {
    line: u32,
    column: u32,
}

impl Location {
    /// A location at `line` and `column`.
    #[must_use]
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }

    /// The 1-based line.
    #[must_use]
    pub const fn line(&self) -> u64 {
        self.line as u64
    }

    /// The 1-based column, in characters.
    #[must_use]
    pub const fn column(&self) -> u64 {
        self.column as u64
    }
}

impl From<serde_saphyr::Location> for Location {
    fn from(l: serde_saphyr::Location) -> Self {
        let narrow = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Self::new(narrow(l.line()), narrow(l.column()))
    }
}

/// The newtype name and the marker key by which serde-saphyr hands a value with its
/// locations to a `Spanned` type (`fast_yaml` uses the same).
pub(crate) const SPANNED_NEWTYPE: &str = "__yaml_spanned";
pub(crate) const SPANNED_MARKER: &str = "__serde_saphyr_private_spanned";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(SPANNED_NEWTYPE, SpannedVisitor(PhantomData))
    }
}

struct SpannedVisitor<T>(PhantomData<T>);

/// The keys of the protocol, read without allocating (half a million values on a large
/// fleet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpannedKey {
    Marker,
    Value,
    Referenced,
    Other,
}

impl<'de> Deserialize<'de> for SpannedKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(SpannedKeyVisitor)
    }
}

struct SpannedKeyVisitor;

impl Visitor<'_> for SpannedKeyVisitor {
    type Value = SpannedKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key of a located value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match v {
            SPANNED_MARKER => SpannedKey::Marker,
            "value" => SpannedKey::Value,
            "referenced" => SpannedKey::Referenced,
            _ => SpannedKey::Other,
        })
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
    type Value = Spanned<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    /// serde-saphyr hands over a deserializer that shows the value and its locations as a
    /// struct.
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> Result<Self::Value, D::Error> {
        const FIELDS: &[&str] = &[SPANNED_MARKER, "value", "referenced", "defined"];
        d.deserialize_struct("Spanned", FIELDS, self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        // The protocol: the marker, then `value`, `referenced`, `defined`, in that order.
        if map.next_key::<SpannedKey>()? != Some(SpannedKey::Marker) {
            return Err(A::Error::custom("a located value was expected"));
        }
        map.next_value::<serde::de::IgnoredAny>()?;
        let (mut value, mut referenced) = (None, None);
        while let Some(key) = map.next_key::<SpannedKey>()? {
            match key {
                SpannedKey::Value => value = Some(map.next_value::<T>()?),
                SpannedKey::Referenced => {
                    referenced = Some(map.next_value::<serde_saphyr::Location>()?.into());
                }
                _ => drop(map.next_value::<serde_saphyr::Location>()?),
            }
        }
        Ok(Spanned {
            value: value.ok_or_else(|| A::Error::missing_field("value"))?,
            referenced: referenced.unwrap_or_default(),
        })
    }
}

/// One policy file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Named groups of identities, with labels.
    #[serde(default)]
    pub segments: NamedMap<SegmentDoc>,
    /// Allow and deny rules.
    #[serde(default)]
    pub rules: Vec<Spanned<RuleDoc>>,
    /// Identities denied before any rule is looked at: IDs, patterns, segments, labels.
    #[serde(default)]
    pub revoked: Vec<Spanned<RevokedDoc>>,
    /// Requests and the decision the policy must give them.
    #[serde(default)]
    pub tests: Vec<Spanned<TestDoc>>,
}

/// A segment: identity patterns plus labels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDoc {
    /// SPIFFE ID patterns (`*` one segment, trailing `**` any depth).
    pub identities: Vec<Spanned<String>>,
    /// Free-form `key: value` labels that label selectors match.
    #[serde(default, deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
    /// Free text for humans; ignored by the engine.
    #[serde(default)]
    pub description: Option<String>,
}

/// A rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// Unique name, reported as the deciding rule.
    pub name: Spanned<String>,
    /// `allow` (default) or `deny`.
    #[serde(default)]
    pub effect: Effect,
    /// Source selectors.
    pub from: Spanned<Vec<Spanned<SelectorDoc>>>,
    /// Destination selectors.
    pub to: Spanned<Vec<Spanned<SelectorDoc>>>,
    /// Upper-case methods; omitted means all.
    #[serde(default)]
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// Path patterns; omitted means all.
    #[serde(default)]
    pub paths: Option<Spanned<Vec<Spanned<String>>>>,
    /// A deny rule that is evaluated and logged as `would-deny` but does not decide.
    #[serde(default)]
    pub dry_run: bool,
    /// A deny rule no legitimate caller ever matches (a decoy): its first match is a probe
    /// (docs/probes.md#tripwires).
    #[serde(default)]
    pub tripwire: bool,
    /// Free text for humans; ignored by the engine.
    #[serde(default)]
    pub description: Option<String>,
    /// RFC 3339 instant after which the rule no longer matches (a time-boxed exception).
    #[serde(default)]
    pub expires: Option<Spanned<String>>,
    /// Who asked for the rule (free text; `policy check` lists it with the exceptions).
    #[serde(default)]
    pub owner: Option<String>,
    /// The ticket that approved it (free text).
    #[serde(default)]
    pub ticket: Option<String>,
    /// Why it exists (free text).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One `revoked:` entry: a plain ID or pattern, or a scope with its containment record.
#[derive(Debug)]
pub enum RevokedDoc {
    /// `- spiffe://example.org/ns/prod/sa/legacy-batch` (an ID or an ID pattern).
    Plain(String),
    /// `- { identity: …, reason: …, since: …, until: … }` (or `segment:` / `labels:`).
    Entry(Box<RevokedEntryDoc>),
}

/// A `revoked:` entry written as a map: exactly one of `identity`, `segment`, `labels`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntryDoc {
    /// An exact SPIFFE ID or an ID pattern.
    #[serde(default)]
    pub identity: Option<Spanned<String>>,
    /// Every identity of this segment.
    #[serde(default)]
    pub segment: Option<Spanned<String>>,
    /// Every identity of the segments carrying all these labels.
    #[serde(default)]
    pub labels: Option<Spanned<LabelMap>>,
    /// Why (free text, e.g. the incident).
    #[serde(default)]
    pub reason: Option<String>,
    /// RFC 3339: when the containment began (a record; it does not delay anything).
    #[serde(default)]
    pub since: Option<Spanned<String>>,
    /// RFC 3339: when the entry lifts itself.
    #[serde(default)]
    pub until: Option<Spanned<String>>,
    /// While the entry is in force, `tests:` whose `from` it revokes are suspended (reported,
    /// not run): the policy's assertions about an identity's normal access cannot veto its
    /// containment. Off unless asked (`policy contain --suspend-tests`).
    #[serde(default)]
    pub suspend_tests: bool,
}

/// What a `revoked:` map entry revokes: the one of `identity`, `segment`, `labels` it gives.
#[derive(Debug, Clone, Copy)]
pub enum RevokedScopeDoc<'a> {
    /// `identity:`: an exact SPIFFE ID or an ID pattern.
    Identity(&'a Spanned<String>),
    /// `segment:`: every identity of this segment.
    Segment(&'a Spanned<String>),
    /// `labels:`: every identity of the segments carrying all these labels.
    Labels(&'a Spanned<LabelMap>),
}

impl RevokedEntryDoc {
    /// The entry's scope; `Err(n)` when it gives `n` scope keys instead of exactly one.
    pub fn scope(&self) -> Result<RevokedScopeDoc<'_>, usize> {
        match (&self.identity, &self.segment, &self.labels) {
            (Some(id), None, None) => Ok(RevokedScopeDoc::Identity(id)),
            (None, Some(name), None) => Ok(RevokedScopeDoc::Segment(name)),
            (None, None, Some(labels)) => Ok(RevokedScopeDoc::Labels(labels)),
            (i, s, l) => {
                Err(usize::from(i.is_some()) + usize::from(s.is_some()) + usize::from(l.is_some()))
            }
        }
    }
}

/// A label map read as text values (`tier: 1` is `"1"`).
#[derive(Debug, Default)]
pub struct LabelMap(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for LabelMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        labels(d).map(LabelMap)
    }
}

impl<'de> Deserialize<'de> for RevokedDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RevokedVisitor)
    }
}

struct RevokedVisitor;

impl<'de> Visitor<'de> for RevokedVisitor {
    type Value = RevokedDoc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a SPIFFE ID or pattern, or a map with one of identity, segment, labels \
             (and reason, since, until)",
        )
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RevokedDoc::Plain(v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let entry =
            RevokedEntryDoc::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(RevokedDoc::Entry(Box::new(entry)))
    }
}

/// `effect:` of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Lets a request through unless a deny rule matches.
    #[default]
    Allow,
    /// Refuses a request whatever allows it.
    Deny,
}

/// A selector in `from`/`to`: a segment name, `"*"`, or a label map.
#[derive(Debug, Clone)]
pub enum SelectorDoc {
    /// A segment name, or `"*"` for any authenticated identity.
    Name(String),
    /// Every segment carrying all these labels.
    Labels(BTreeMap<String, String>),
}

impl<'de> Deserialize<'de> for SelectorDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SelectorVisitor)
    }
}

struct SelectorVisitor;

impl<'de> Visitor<'de> for SelectorVisitor {
    type Value = SelectorDoc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a segment name, \"*\", or a label map such as { env: prod }")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(SelectorDoc::Name(v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut labels = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, LabelValue>()? {
            labels.insert(k, v.0);
        }
        Ok(SelectorDoc::Labels(labels))
    }
}

/// A label value: YAML writes `tier: 1` or `pci: true` as scalars that are not strings;
/// labels compare as text, so every scalar is read as its text.
struct LabelValue(String);

impl<'de> Deserialize<'de> for LabelValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LabelValueVisitor)
    }
}

struct LabelValueVisitor;

impl Visitor<'_> for LabelValueVisitor {
    type Value = LabelValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a label value (a string, number or boolean)")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(LabelValue(v.to_owned()))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(LabelValue(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(LabelValue(v.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(LabelValue(v.to_string()))
    }
}

fn labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, LabelValue>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// One entry of `tests:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestDoc {
    /// Source SPIFFE ID.
    pub from: Spanned<String>,
    /// Destination SPIFFE ID.
    pub to: Spanned<String>,
    /// Method; `GET` when omitted.
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// Request path; `/` when omitted. Normalized like a real request.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Expected decision.
    pub expect: Expect,
    /// Expected deciding rule (or `revoked` / `default-deny`).
    #[serde(default)]
    pub rule: Option<String>,
}

/// `expect:` of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// The request is let through.
    Allow,
    /// The request is refused.
    Deny,
    /// A dry-run deny rule matched a request that is let through.
    WouldDeny,
}

/// A YAML mapping kept in file order with the location of every key, so duplicate
/// names across files can be reported where they are written.
#[derive(Debug)]
pub struct NamedMap<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(NamedMapVisitor(PhantomData))
    }
}

struct NamedMapVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedMapVisitor<T> {
    type Value = NamedMap<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of names to definitions")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(NamedMap(entries))
    }
}
