//! `validate`: the parsed files of a policy → validated, resolved parts (segments sorted by
//! name, selectors resolved to segment/label-group targets, patterns parsed), or every
//! error in them at file:line:col (docs/policy-language.md "Invalid policy … is rejected").
//! `compile.rs` turns the parts into indexes.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::compiled::{Group, Loc, Revocation, Rule, Segment, Target};
use super::error::{PolicyError, PolicyErrorKind, PolicyErrors};
use super::load::{PolicySource, SourceFile};
use super::method::MethodSet;
use super::pattern::{IdentityPattern, PathPattern, PatternError};
use super::source::{Effect, RuleDoc, SelectorDoc, Spanned};

mod revoked;

/// A policy's validated parts, ready to index.
pub(super) struct Parts {
    pub(super) files: Vec<String>,
    pub(super) segments: Vec<Segment>,
    pub(super) groups: Vec<Group>,
    pub(super) rules: Vec<Rule>,
    pub(super) revoked: Vec<Revocation>,
}

/// Checks every file and resolves names, collecting every error rather than the first.
///
/// # Errors
/// Every problem found, each at file:line:col.
pub(super) fn validate(source: &PolicySource) -> Result<Parts, PolicyErrors> {
    let mut cx = Validator::new(source);
    let segments = cx.segments();
    let mut names: FxHashMap<&str, u32> = FxHashMap::default();
    for (i, s) in segments.iter().enumerate() {
        names.insert(&s.name, i as u32);
    }
    let mut groups = GroupTable::new(&segments);
    let rules = cx.rules(&names, &mut groups);
    let groups = groups.into_groups();
    let revoked = cx.revoked(&segments, &names);
    if !cx.errors.is_empty() {
        return Err(PolicyErrors(cx.errors));
    }
    Ok(Parts {
        files: cx.files(),
        segments,
        groups,
        rules,
        revoked,
    })
}

/// Distinct label selectors, shared between rules.
pub(super) struct GroupTable<'s> {
    /// (label key, value) → segments carrying it, ascending.
    by_label: BTreeMap<(&'s str, &'s str), Vec<u32>>,
    segments: &'s [Segment],
    ids: BTreeMap<BTreeMap<String, String>, u32>,
    groups: Vec<Group>,
}

impl<'s> GroupTable<'s> {
    pub(super) fn new(segments: &'s [Segment]) -> Self {
        let mut by_label: BTreeMap<(&str, &str), Vec<u32>> = BTreeMap::new();
        for (id, segment) in segments.iter().enumerate() {
            for (k, v) in &segment.labels {
                by_label.entry((k, v)).or_default().push(id as u32);
            }
        }
        Self {
            by_label,
            segments,
            ids: BTreeMap::new(),
            groups: Vec::new(),
        }
    }

    pub(super) fn into_groups(self) -> Vec<Group> {
        self.groups
    }

    /// The groups interned so far, by id.
    pub(super) fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group id of a (non-empty) label selector, computing its members once.
    fn intern(&mut self, labels: &BTreeMap<String, String>) -> u32 {
        if let Some(&id) = self.ids.get(labels) {
            return id;
        }
        // Start from the segments carrying the first label, keep those carrying all.
        let first = labels.iter().next().map(|(k, v)| (k.as_str(), v.as_str()));
        let candidates = first
            .and_then(|kv| self.by_label.get(&kv))
            .map_or(&[][..], Vec::as_slice);
        let members = candidates
            .iter()
            .copied()
            .filter(|&s| {
                let have = &self.segments[s as usize].labels;
                labels.iter().all(|(k, v)| have.get(k) == Some(v))
            })
            .collect();
        let id = self.groups.len() as u32;
        self.groups.push(Group {
            labels: labels.clone(),
            members,
        });
        self.ids.insert(labels.clone(), id);
        id
    }
}

/// Walks the source, collecting every error instead of stopping at the first.
pub(super) struct Validator<'a> {
    source: &'a PolicySource,
    pub(super) errors: Vec<PolicyError>,
    path_cache: FxHashMap<String, Result<Arc<PathPattern>, PatternError>>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(source: &'a PolicySource) -> Self {
        Self {
            source,
            errors: Vec::new(),
            path_cache: FxHashMap::default(),
        }
    }

    fn files(&self) -> Vec<String> {
        self.source.files.iter().map(|f| f.name.clone()).collect()
    }

    fn loc<T>(file: usize, spanned: &Spanned<T>) -> Loc {
        Loc {
            file,
            line: spanned.referenced.line(),
            col: spanned.referenced.column(),
        }
    }

    fn error(&mut self, at: Loc, kind: PolicyErrorKind) {
        let file = &self.source.files[at.file].name;
        self.errors
            .push(PolicyError::at(file, at.line, at.col, kind));
    }

    /// Records `name` as defined at `at`; if it already was, returns where (file:line:col).
    fn defined_before(
        &self,
        seen: &mut FxHashMap<&'a str, Loc>,
        name: &'a str,
        at: Loc,
    ) -> Option<String> {
        match seen.get(name) {
            Some(first) => Some(self.locate(*first)),
            None => {
                seen.insert(name, at);
                None
            }
        }
    }

    fn locate(&self, at: Loc) -> String {
        format!("{}:{}:{}", self.source.files[at.file].name, at.line, at.col)
    }

    fn each_file(&self) -> impl Iterator<Item = (usize, &'a SourceFile)> + use<'a> {
        self.source.files.iter().enumerate()
    }

    /// Segments of every file, checked, sorted by name.
    pub(super) fn segments(&mut self) -> Vec<Segment> {
        let mut seen: FxHashMap<&'a str, Loc> = FxHashMap::default();
        let mut out = Vec::new();
        for (f, file) in self.each_file() {
            for (name, doc) in &file.doc.segments.0 {
                let at = Self::loc(f, name);
                if let Some(first) = self.defined_before(&mut seen, &name.value, at) {
                    self.error(
                        at,
                        PolicyErrorKind::DuplicateSegment(name.value.clone(), first),
                    );
                    continue;
                }
                if !valid_name(&name.value) {
                    self.error(at, PolicyErrorKind::BadName(name.value.clone()));
                }
                if doc.identities.is_empty() {
                    self.error(at, PolicyErrorKind::NoIdentities(name.value.clone()));
                }
                let identities = self.patterns(f, &doc.identities);
                out.push(Segment {
                    name: name.value.clone(),
                    identities,
                    labels: doc.labels.clone(),
                    at,
                });
            }
        }
        sort_by_name(&mut out, |item| item.name.as_str());
        out
    }

    fn patterns(&mut self, f: usize, texts: &[Spanned<String>]) -> Vec<IdentityPattern> {
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            match IdentityPattern::parse(&text.value) {
                Ok(p) => out.push(p),
                Err(e) => self.error(Self::loc(f, text), e.into()),
            }
        }
        out
    }

    /// An RFC 3339 field as unix seconds: `None` when absent, `Some(None)` when invalid
    /// (already reported).
    fn timestamp(
        &mut self,
        f: usize,
        field: &'static str,
        text: Option<&Spanned<String>>,
    ) -> Option<Option<i64>> {
        let text = text?;
        match parse_time(&text.value) {
            Ok(t) => Some(Some(t)),
            Err(why) => {
                self.error(
                    Self::loc(f, text),
                    PolicyErrorKind::BadTimestamp(field, text.value.clone(), why),
                );
                Some(None)
            }
        }
    }

    /// Rules of every file, checked and resolved, sorted by name.
    fn rules(&mut self, names: &FxHashMap<&str, u32>, groups: &mut GroupTable) -> Vec<Rule> {
        let mut seen: FxHashMap<&'a str, Loc> = FxHashMap::default();
        let mut out = Vec::new();
        for (f, file) in self.each_file() {
            for doc in &file.doc.rules {
                let name = &doc.value.name;
                let at = Self::loc(f, name);
                if let Some(first) = self.defined_before(&mut seen, &name.value, at) {
                    self.error(
                        at,
                        PolicyErrorKind::DuplicateRule(name.value.clone(), first),
                    );
                    continue;
                }
                if let Some(rule) = self.rule(f, &doc.value, names, groups) {
                    out.push(rule);
                }
            }
        }
        sort_by_name(&mut out, |item| item.name.as_str());
        out
    }

    /// One rule checked and resolved; `None` when it has errors (recorded).
    pub(super) fn rule(
        &mut self,
        f: usize,
        doc: &RuleDoc,
        names: &FxHashMap<&str, u32>,
        groups: &mut GroupTable,
    ) -> Option<Rule> {
        let errors_before = self.errors.len();
        let at = Self::loc(f, &doc.name);
        let name = doc.name.value.clone();
        if matches!(
            name.as_str(),
            "revoked" | "default-deny" | "ambiguous-path" | "stale-classification"
        ) {
            self.error(at, PolicyErrorKind::ReservedRuleName(name.clone()));
        } else if !valid_name(&name) {
            self.error(at, PolicyErrorKind::BadName(name.clone()));
        }
        if doc.dry_run && doc.effect == Effect::Allow {
            self.error(at, PolicyErrorKind::DryRunOnAllow);
        }
        if doc.tripwire && doc.effect == Effect::Allow {
            self.error(at, PolicyErrorKind::TripwireOnAllow);
        }
        let from = self.selectors(f, "from", &doc.from, names, groups);
        let to = self.selectors(f, "to", &doc.to, names, groups);
        let methods = doc.methods.as_ref().and_then(|m| self.methods(f, m));
        let paths = doc.paths.as_ref().and_then(|p| self.paths(f, p));
        let expires = self.timestamp(f, "expires", doc.expires.as_ref()).flatten();
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Rule {
            name,
            effect: doc.effect,
            dry_run: doc.dry_run,
            tripwire: doc.tripwire,
            from,
            to,
            methods,
            paths,
            at,
            expires,
            expired: false,
            owner: doc.owner.clone(),
            ticket: doc.ticket.clone(),
            reason: doc.reason.clone(),
        })
    }

    fn selectors(
        &mut self,
        f: usize,
        field: &'static str,
        list: &Spanned<Vec<Spanned<SelectorDoc>>>,
        names: &FxHashMap<&str, u32>,
        groups: &mut GroupTable,
    ) -> Vec<Target> {
        if list.value.is_empty() {
            self.error(Self::loc(f, list), PolicyErrorKind::EmptyList(field));
        }
        let mut out = Vec::with_capacity(list.value.len());
        for sel in &list.value {
            let target = match &sel.value {
                SelectorDoc::Name(n) if n == "*" => Target::Any,
                SelectorDoc::Name(n) => match names.get(n.as_str()) {
                    Some(&id) => Target::Segment(id),
                    None => {
                        let hint = did_you_mean(n, names.keys().copied());
                        self.error(
                            Self::loc(f, sel),
                            PolicyErrorKind::UnknownSegment(n.clone(), hint),
                        );
                        continue;
                    }
                },
                SelectorDoc::Labels(l) if l.is_empty() => {
                    self.error(Self::loc(f, sel), PolicyErrorKind::EmptyLabelSelector);
                    continue;
                }
                SelectorDoc::Labels(l) => Target::Group(groups.intern(l)),
            };
            out.push(target);
        }
        out.sort();
        out.dedup();
        out
    }

    fn methods(&mut self, f: usize, list: &Spanned<Vec<Spanned<String>>>) -> Option<MethodSet> {
        if list.value.is_empty() {
            self.error(Self::loc(f, list), PolicyErrorKind::EmptyList("methods"));
            return None;
        }
        let mut set = MethodSet::default();
        for m in &list.value {
            if let Err(hint) = set.insert(&m.value) {
                self.error(
                    Self::loc(f, m),
                    PolicyErrorKind::BadMethod(m.value.clone(), hint),
                );
            }
        }
        Some(set)
    }

    fn paths(
        &mut self,
        f: usize,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Option<Vec<Arc<PathPattern>>> {
        if list.value.is_empty() {
            self.error(Self::loc(f, list), PolicyErrorKind::EmptyList("paths"));
            return None;
        }
        let mut out = Vec::with_capacity(list.value.len());
        for p in &list.value {
            // Fleets repeat a few path patterns across thousands of rules: parse each once.
            // A lookup by `&str` first: an owned key is made once per distinct pattern.
            if !self.path_cache.contains_key(p.value.as_str()) {
                let parsed = PathPattern::parse(&p.value).map(Arc::new);
                self.path_cache.insert(p.value.clone(), parsed);
            }
            let Some(parsed) = self.path_cache.get(p.value.as_str()) else {
                continue;
            };
            match parsed {
                Ok(pattern) => out.push(Arc::clone(pattern)),
                Err(e) => {
                    let e = e.clone();
                    self.error(Self::loc(f, p), e.into());
                }
            }
        }
        out.sort();
        out.dedup();
        Some(out)
    }
}

/// Sorts by a unique name, moving each (large) item once instead of at every swap.
fn sort_by_name<T>(items: &mut Vec<T>, name: impl Fn(&T) -> &str) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_unstable_by(|&a, &b| name(&items[a]).cmp(name(&items[b])));
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(order.into_iter().filter_map(|i| slots[i].take()));
}

/// Segment and rule names: what a selector and a log line can carry unambiguously.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// RFC 3339 (UTC `Z` or an offset) → unix seconds; the error says why not.
pub fn parse_time(text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|e| e.to_string())
}

/// Unix seconds → RFC 3339 in UTC (`2026-12-31T18:00:00Z`).
pub fn format_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{t}"))
}

/// A hint naming the closest defined segment, when one is close.
fn did_you_mean<'n>(wrong: &str, names: impl Iterator<Item = &'n str>) -> String {
    match closest_name(wrong, names) {
        Some(n) => format!("; did you mean `{n}`?"),
        None => "; define it under `segments:`".to_owned(),
    }
}

/// The name at most two edits away from `wrong`, the closest first.
pub(super) fn closest_name<'n>(
    wrong: &str,
    names: impl Iterator<Item = &'n str>,
) -> Option<&'n str> {
    names
        .map(|n| (edit_distance(wrong, n), n))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
