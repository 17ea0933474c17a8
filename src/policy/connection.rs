//! The decision for one L4 (TCP) connection (docs/l4.md): "One decision per connection,
//! after the mTLS handshake, with no method and no path: allow rules that name `methods` or
//! `paths` do not match a TCP connection; deny rules that name them **do** (fail closed)."
//!
//! The steps are those of [`CompiledPolicy::decide`] (revoked, deny, allow, default deny,
//! with `dry_run` and `expires:` as there); only which rules match differs. A connection has
//! no path, so there is no ambiguous spelling to refuse.

use super::classify::Classification;
use super::compiled::{CompiledPolicy, Rule};
use super::decide::{Best, Parties, Verdict};
use super::source::Effect;
use crate::identity::SpiffeId;

impl Rule {
    /// Whether the rule applies to a connection, which has no method and no path: every deny
    /// rule does; an allow rule only if it names neither.
    pub fn matches_connection(&self) -> bool {
        self.effect == Effect::Deny || (self.methods.is_none() && self.paths.is_none())
    }
}

impl CompiledPolicy {
    /// Decides a TCP connection from `source` to `destination`.
    pub fn decide_connection(&self, source: &SpiffeId, destination: &SpiffeId) -> Verdict<'_> {
        let (source, destination) = (self.classify(source), self.classify(destination));
        self.decide_connection_classified(&source, &destination)
    }

    /// [`Self::decide_connection`] for identities classified by this same policy; another
    /// policy's classification is refused (`stale-classification`).
    pub fn decide_connection_classified(
        &self,
        source: &Classification<'_>,
        destination: &Classification<'_>,
    ) -> Verdict<'_> {
        if let Some(refused) = self.refused_before_rules(source, destination) {
            return refused;
        }
        let mut best = Best::default();
        let parties = Parties {
            source,
            destination,
        };
        self.each_filed(&parties, |index, rule| {
            if rule.matches_connection() {
                best.note(index, rule);
            }
        });
        best.verdict(self)
    }
}

#[cfg(test)]
mod tests {
    use crate::identity::SpiffeId;
    use crate::policy::analysis::lint::{http_denies_matching_connections, http_only_allows};
    use crate::policy::{Decision, Reason, from_text};

    const POLICY: &str = r#"
segments:
  prod: { identities: ["spiffe://example.org/ns/prod/**"] }
  staging: { identities: ["spiffe://example.org/ns/staging/**"] }
  db: { identities: ["spiffe://example.org/ns/prod/sa/ledger-db"] }
  batch: { identities: ["spiffe://example.org/ns/prod/sa/batch"] }
rules:
  - { name: prod-to-db, from: [prod], to: [db] }
  - { name: staging-reads-db, from: [staging], to: [db], methods: [GET] }
  - { name: staging-paths-db, from: [staging], to: [db], paths: ["/**"] }
  - { name: no-writes-from-batch, effect: deny, from: [batch], to: [db], methods: [POST] }
"#;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn an_allow_without_methods_or_paths_allows_the_connection() {
        let policy = from_text("p.yaml", POLICY).unwrap();
        let v = policy.decide_connection(
            &id("spiffe://example.org/ns/prod/sa/payments"),
            &id("spiffe://example.org/ns/prod/sa/ledger-db"),
        );
        assert_eq!(
            (v.decision, v.reason, v.rule),
            (Decision::Allow, Reason::AllowRule, Some("prod-to-db"))
        );
    }

    #[test]
    fn allows_naming_methods_or_paths_never_match_a_connection() {
        let policy = from_text("p.yaml", POLICY).unwrap();
        let v = policy.decide_connection(
            &id("spiffe://example.org/ns/staging/sa/ci"),
            &id("spiffe://example.org/ns/prod/sa/ledger-db"),
        );
        assert_eq!(
            (v.decision, v.reason),
            (Decision::Deny, Reason::DefaultDeny)
        );
        let db = id("spiffe://example.org/ns/prod/sa/ledger-db");
        assert_eq!(
            http_only_allows(&policy, &db),
            ["staging-paths-db", "staging-reads-db"]
        );
        assert!(
            http_only_allows(&policy, &id("spiffe://example.org/ns/prod/sa/payments")).is_empty()
        );
        assert_eq!(
            http_denies_matching_connections(&policy, &db),
            ["no-writes-from-batch"]
        );
    }

    #[test]
    fn denies_naming_methods_match_a_connection_fail_closed() {
        let policy = from_text("p.yaml", POLICY).unwrap();
        let v = policy.decide_connection(
            &id("spiffe://example.org/ns/prod/sa/batch"),
            &id("spiffe://example.org/ns/prod/sa/ledger-db"),
        );
        assert_eq!(
            (v.decision, v.reason, v.rule),
            (
                Decision::Deny,
                Reason::DenyRule,
                Some("no-writes-from-batch")
            )
        );
    }

    #[test]
    fn a_revoked_source_is_refused_and_stale_classifications_too() {
        let revoked = format!("{POLICY}revoked: [\"spiffe://example.org/ns/prod/sa/payments\"]\n");
        let policy = from_text("p.yaml", &revoked).unwrap();
        let (src, dst) = (
            id("spiffe://example.org/ns/prod/sa/payments"),
            id("spiffe://example.org/ns/prod/sa/ledger-db"),
        );
        assert_eq!(policy.decide_connection(&src, &dst).reason, Reason::Revoked);
        let other = from_text("p.yaml", POLICY).unwrap();
        let (s, d) = (other.classify(&src), other.classify(&dst));
        assert_eq!(
            policy.decide_connection_classified(&s, &d).reason,
            Reason::StaleClassification
        );
        assert_eq!(
            other.decide_connection_classified(&s, &d).decision,
            Decision::Allow
        );
    }
}
