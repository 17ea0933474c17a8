//! The connection lints (docs/l4.md): rules written for HTTP that a TCP listener or
//! destination cannot use as meant — allows that name methods or paths and so never allow a
//! connection, denies that name them yet refuse every connection (fail closed). The sidecar
//! warns about both at start-up; the decision itself is `policy::connection`'s.

use crate::identity::SpiffeId;
use crate::policy::compiled::CompiledPolicy;
use crate::policy::source::Effect;

/// The allow rules that would reach `destination` from some source but can never allow a
/// connection to it, because they name methods or paths: what the sidecar warns about at
/// start-up for a TCP listener or destination. Sorted by name; expired rules left out.
pub fn http_only_allows<'p>(policy: &'p CompiledPolicy, destination: &SpiffeId) -> Vec<&'p str> {
    http_rules_to(policy, destination, Effect::Allow)
}

/// The deny rules that name methods or paths (written for HTTP) yet refuse every TCP
/// connection to `destination` from the sources they cover: the other start-up warning.
pub fn http_denies_matching_connections<'p>(
    policy: &'p CompiledPolicy,
    destination: &SpiffeId,
) -> Vec<&'p str> {
    http_rules_to(policy, destination, Effect::Deny)
}

/// Rules of `effect` filed for `destination` that name methods or paths; sorted, expired
/// ones and dry runs left out.
fn http_rules_to<'p>(
    policy: &'p CompiledPolicy,
    destination: &SpiffeId,
    effect: Effect,
) -> Vec<&'p str> {
    let destination = policy.classify(destination);
    let mut names: Vec<&str> = destination
        .keys
        .dst
        .iter()
        .filter_map(|&d| policy.by_dst.get(d as usize)?.as_deref())
        .flat_map(|bucket| bucket.by_src.iter().flat_map(|(_, rules)| rules.iter()))
        .map(|&index| &policy.rules[index as usize])
        .filter(|rule| rule.effect == effect && !rule.expired && !rule.dry_run)
        .filter(|rule| rule.methods.is_some() || rule.paths.is_some())
        .map(|rule| rule.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}
