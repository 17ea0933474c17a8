//! `revoked:` entries, validated and resolved to the identity patterns they revoke: a plain
//! ID or pattern, or a map entry scoped by exactly one of `identity`, `segment`, `labels`,
//! with its record (`reason`, `since`, `until`, `suspend_tests`).

use rustc_hash::FxHashMap;

use super::{Validator, did_you_mean};
use crate::policy::compiled::{Loc, Revocation, Segment};
use crate::policy::error::PolicyErrorKind;
use crate::policy::pattern::IdentityPattern;
use crate::policy::source::{LabelMap, RevokedDoc, RevokedEntryDoc, RevokedScopeDoc, Spanned};

impl Validator<'_> {
    /// Every `revoked:` entry, resolved to the identity patterns it revokes.
    pub(in crate::policy) fn revoked(
        &mut self,
        segments: &[Segment],
        names: &FxHashMap<&str, u32>,
    ) -> Vec<Revocation> {
        let mut out = Vec::new();
        for (f, file) in self.each_file() {
            for entry in &file.doc.revoked {
                let at = Self::loc(f, entry);
                let revocation = match &entry.value {
                    RevokedDoc::Plain(text) => self.revoked_plain(at, text),
                    RevokedDoc::Entry(doc) => self.revoked_entry(f, at, doc, segments, names),
                };
                out.extend(revocation);
            }
        }
        out
    }

    /// `- spiffe://…`: an ID or pattern, with no record.
    fn revoked_plain(&mut self, at: Loc, text: &str) -> Option<Revocation> {
        match IdentityPattern::parse(text) {
            Ok(p) => Some(Revocation {
                scope: text.to_owned(),
                patterns: vec![p],
                reason: None,
                since: None,
                until: None,
                lifted: false,
                suspend_tests: false,
                at,
            }),
            Err(e) => {
                self.error(at, e.into());
                None
            }
        }
    }

    /// `- { identity | segment | labels, reason, since, until, suspend_tests }`.
    fn revoked_entry(
        &mut self,
        f: usize,
        at: Loc,
        doc: &RevokedEntryDoc,
        segments: &[Segment],
        names: &FxHashMap<&str, u32>,
    ) -> Option<Revocation> {
        let scope = match doc.scope() {
            Ok(scope) => scope,
            Err(count) => {
                self.error(at, PolicyErrorKind::RevokedScope(count));
                return None;
            }
        };
        let (since, until) = self.revoked_window(f, doc)?;
        let (scope, patterns) = match scope {
            RevokedScopeDoc::Identity(id) => self.revoked_identity(f, id)?,
            RevokedScopeDoc::Segment(name) => self.revoked_segment(f, name, segments, names)?,
            RevokedScopeDoc::Labels(labels) => self.revoked_labels(f, labels, segments)?,
        };
        Some(Revocation {
            scope,
            patterns,
            reason: doc.reason.clone(),
            since,
            until,
            lifted: false,
            suspend_tests: doc.suspend_tests,
            at,
        })
    }

    /// An entry's `since` and `until` as unix seconds (`None` where absent or invalid, which
    /// is reported); `None` for the entry when it ends before it began.
    fn revoked_window(
        &mut self,
        f: usize,
        doc: &RevokedEntryDoc,
    ) -> Option<(Option<i64>, Option<i64>)> {
        let since = self.timestamp(f, "since", doc.since.as_ref());
        let until = self.timestamp(f, "until", doc.until.as_ref());
        if let (Some(Some(s)), Some(Some(u)), Some(until_doc)) = (since, until, &doc.until)
            && u <= s
        {
            let text = |t: &Option<Spanned<String>>| {
                t.as_ref().map(|x| x.value.clone()).unwrap_or_default()
            };
            self.error(
                Self::loc(f, until_doc),
                PolicyErrorKind::UntilBeforeSince(text(&doc.until), text(&doc.since)),
            );
            return None;
        }
        Some((since.flatten(), until.flatten()))
    }

    /// `identity:`: the pattern, scoped by its text.
    fn revoked_identity(
        &mut self,
        f: usize,
        id: &Spanned<String>,
    ) -> Option<(String, Vec<IdentityPattern>)> {
        match IdentityPattern::parse(&id.value) {
            Ok(p) => Some((id.value.clone(), vec![p])),
            Err(e) => {
                self.error(Self::loc(f, id), e.into());
                None
            }
        }
    }

    /// `segment:`: the segment's identity patterns.
    fn revoked_segment(
        &mut self,
        f: usize,
        name: &Spanned<String>,
        segments: &[Segment],
        names: &FxHashMap<&str, u32>,
    ) -> Option<(String, Vec<IdentityPattern>)> {
        let Some(&s) = names.get(name.value.as_str()) else {
            let hint = did_you_mean(&name.value, names.keys().copied());
            self.error(
                Self::loc(f, name),
                PolicyErrorKind::UnknownSegment(name.value.clone(), hint),
            );
            return None;
        };
        let patterns = segments[s as usize].identities.clone();
        Some((format!("segment: {}", name.value), patterns))
    }

    /// `labels:`: the identity patterns of every segment carrying all the labels.
    fn revoked_labels(
        &mut self,
        f: usize,
        labels: &Spanned<LabelMap>,
        segments: &[Segment],
    ) -> Option<(String, Vec<IdentityPattern>)> {
        let map = &labels.value.0;
        if map.is_empty() {
            self.error(Self::loc(f, labels), PolicyErrorKind::EmptyLabelSelector);
            return None;
        }
        let text = map
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let members: Vec<&Segment> = segments
            .iter()
            .filter(|s| map.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .collect();
        if members.is_empty() {
            self.error(
                Self::loc(f, labels),
                PolicyErrorKind::RevokedLabelsMatchNothing(format!("{{ {text} }}")),
            );
            return None;
        }
        let patterns = members
            .iter()
            .flat_map(|s| s.identities.iter().cloned())
            .collect();
        Some((format!("labels: {{ {text} }}"), patterns))
    }
}
