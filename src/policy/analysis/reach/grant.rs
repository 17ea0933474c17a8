//! The exact grants of the rules filed between two identity classes: one per group of methods
//! the rules treat alike, each the allowed path patterns that deny rules leave something of,
//! the carve-outs that touch them (`except`) or only a lenient upstream's spelling
//! (`except_lenient`), and the rules behind it. Exact thanks to [`region`].

use std::sync::Arc;

use super::edge::{Edge, Methods, Party};
use crate::policy::analysis::region;
use crate::policy::compiled::{CompiledPolicy, Rule};
use crate::policy::method::MethodBit;
use crate::policy::pattern::PathPattern;
use crate::policy::source::Effect;

/// `/**`: the paths of a rule without `paths`.
pub(super) fn all_paths() -> PathPattern {
    // Invariant: `/**` is a valid path pattern.
    PathPattern::parse("/**").unwrap_or_else(|_| unreachable!("`/**` parses"))
}

/// What one group of methods may do between two classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Grant {
    methods: Methods,
    paths: Vec<Arc<PathPattern>>,
    except: Vec<Arc<PathPattern>>,
    except_lenient: Vec<Arc<PathPattern>>,
    allow_rules: Vec<String>,
    deny_rules: Vec<String>,
    dry_run_rules: Vec<String>,
}

impl Grant {
    /// The grant as the edge between two parties.
    pub(super) fn into_edge(self, source: &Arc<Party>, destination: &Arc<Party>) -> Edge {
        Edge {
            source: source.clone(),
            destination: destination.clone(),
            methods: self.methods,
            paths: self.paths,
            except: self.except,
            except_lenient: self.except_lenient,
            allow_rules: self.allow_rules,
            deny_rules: self.deny_rules,
            dry_run_rules: self.dry_run_rules,
        }
    }
}

/// The exact grants of a set of rules: one per group of methods the rules treat alike.
pub(super) fn grants(policy: &CompiledPolicy, rules: &[u32], all: &Arc<PathPattern>) -> Vec<Grant> {
    // Expired rules match nothing (docs/runbook.md): they grant and carve nothing either.
    let rules: Vec<&Rule> = rules
        .iter()
        .map(|r| &policy.rules[*r as usize])
        .filter(|r| !r.expired)
        .collect();
    if !rules.iter().any(|r| r.effect == Effect::Allow) {
        return Vec::new();
    }
    let mut named: Vec<&str> = rules
        .iter()
        .filter_map(|r| r.methods.as_ref())
        .flat_map(|m| m.names())
        .collect();
    named.sort_unstable();
    named.dedup();
    // Each named method, then "any other method" (which only rules without `methods` admit).
    let mut groups: Vec<(Grant, Vec<Option<&str>>)> = Vec::new();
    for atom in named.iter().copied().map(Some).chain([None]) {
        let Some(grant) = grant_for(&rules, atom, all) else {
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == grant) {
            Some((_, atoms)) => atoms.push(atom),
            None => groups.push((grant, vec![atom])),
        }
    }
    groups
        .into_iter()
        .map(|(mut grant, atoms)| {
            grant.methods = methods_of(&named, &atoms);
            grant
        })
        .collect()
}

/// The methods of a group of atoms (`None`: every method no rule names).
fn methods_of(named: &[&str], atoms: &[Option<&str>]) -> Methods {
    if atoms.contains(&None) {
        let missing = named.iter().filter(|m| !atoms.contains(&Some(**m)));
        Methods::AllBut(missing.map(|m| (*m).to_owned()).collect())
    } else {
        Methods::Only(atoms.iter().flatten().map(|m| (*m).to_owned()).collect())
    }
}

/// The grant for requests of one method (`None`: a method no rule names), if any.
fn grant_for(rules: &[&Rule], atom: Option<&str>, all: &Arc<PathPattern>) -> Option<Grant> {
    let admitting = Admitting::of(rules, atom);
    if admitting.allow.is_empty() {
        return None;
    }
    let carved = unique(admitting.deny.iter().flat_map(|r| paths_of(r, all)));
    let carved_refs: Vec<&PathPattern> = carved.iter().map(|p| &**p).collect();
    let paths = open_paths(&admitting.allow, &carved_refs, all);
    if paths.is_empty() {
        return None;
    }
    let (except, except_lenient): (Vec<_>, Vec<_>) =
        carved.iter().cloned().partition(|e| touches(&paths, e));
    let [allow_rules, deny_rules, dry_run_rules] = admitting.behind(&paths, &carved_refs, all);
    Some(Grant {
        methods: Methods::AllBut(Vec::new()),
        paths,
        except,
        except_lenient,
        allow_rules,
        deny_rules,
        dry_run_rules,
    })
}

/// Whether a carve-out touches some allowed pattern.
fn touches(paths: &[Arc<PathPattern>], carved: &PathPattern) -> bool {
    paths.iter().any(|p| region::overlaps(p, carved))
}

/// The rules that admit requests of one method, by what they do.
struct Admitting<'r> {
    allow: Vec<&'r Rule>,
    deny: Vec<&'r Rule>,
    /// `dry_run` deny rules.
    dry: Vec<&'r Rule>,
}

impl<'r> Admitting<'r> {
    /// Sorts `rules` admitting `atom` (`None`: a method no rule names) by effect.
    fn of(rules: &[&'r Rule], atom: Option<&str>) -> Self {
        let admits = |r: &&Rule| match (&r.methods, atom) {
            (None, _) => true,
            (Some(m), Some(name)) => m.contains(MethodBit::of(name), name),
            (Some(_), None) => false,
        };
        let of = |effect: Effect, dry: bool| -> Vec<&'r Rule> {
            rules
                .iter()
                .copied()
                .filter(|r| r.effect == effect && (effect == Effect::Allow || r.dry_run == dry))
                .filter(admits)
                .collect()
        };
        Self {
            allow: of(Effect::Allow, false),
            deny: of(Effect::Deny, false),
            dry: of(Effect::Deny, true),
        }
    }

    /// The rules behind a grant of `paths` minus `carved`, by name: the allow rules that
    /// grant some of it, the deny rules that carve some of it, the dry runs that would.
    fn behind(
        self,
        paths: &[Arc<PathPattern>],
        carved: &[&PathPattern],
        all: &Arc<PathPattern>,
    ) -> [Vec<String>; 3] {
        let any_path = |r: &Rule, test: &dyn Fn(&PathPattern) -> bool| {
            paths_of(r, all).iter().any(|p| test(p))
        };
        let grants = |r: &&Rule| any_path(r, &|p| region::remains(p, carved));
        let carves = |r: &&Rule| any_path(r, &|e| touches(paths, e));
        let would = |r: &&Rule| {
            any_path(r, &|d| {
                paths.iter().any(|p| region::exists(&[&**p, d], carved))
            })
        };
        [
            names(self.allow.into_iter().filter(grants)),
            names(self.deny.into_iter().filter(carves)),
            names(self.dry.into_iter().filter(would)),
        ]
    }
}

/// A rule's path patterns (`/**` when it names none).
fn paths_of(rule: &Rule, all: &Arc<PathPattern>) -> Vec<Arc<PathPattern>> {
    rule.paths.clone().unwrap_or_else(|| vec![all.clone()])
}

/// Allowed patterns that deny rules leave something of, minus those another one covers.
fn open_paths(
    allow: &[&Rule],
    carved: &[&PathPattern],
    all: &Arc<PathPattern>,
) -> Vec<Arc<PathPattern>> {
    let open: Vec<Arc<PathPattern>> = unique(allow.iter().flat_map(|r| paths_of(r, all)))
        .into_iter()
        .filter(|p| region::remains(p, carved))
        .collect();
    let covered = |p: &Arc<PathPattern>| {
        open.iter()
            .any(|q| q.as_str() != p.as_str() && !region::remains(p, &[&**q]))
    };
    open.iter().filter(|p| !covered(p)).cloned().collect()
}

/// Rule names, sorted.
fn names<'r>(rules: impl Iterator<Item = &'r Rule>) -> Vec<String> {
    let mut out: Vec<String> = rules.map(|r| r.name.clone()).collect();
    out.sort_unstable();
    out
}

/// Patterns de-duplicated by text, sorted by text.
fn unique(patterns: impl Iterator<Item = Arc<PathPattern>>) -> Vec<Arc<PathPattern>> {
    let mut out: Vec<Arc<PathPattern>> = patterns.collect();
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup_by(|a, b| a.as_str() == b.as_str());
    out
}
