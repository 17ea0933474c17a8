//! `segward policy explain` (docs/cli.md, §3, §6): one request — given as flags or as a
//! decision-log line — decided against a policy, with the decision path, every candidate rule
//! and whether it matched, and for a logged request how today's decision compares with the
//! logged one.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use serde_json::{Value, json};

use super::compare::Comparison;
use super::log_line::{self, LogLine, Parties};
use super::{Outcome, report_invalid};
use crate::identity::SpiffeId;
use crate::path::{NormalizedPath, normalize};
use crate::policy::source::Effect;
use crate::policy::{self, Check, CompiledPolicy, Explanation, Request, RuleExplanation};

/// `policy explain` arguments: the request comes from exactly one of --from/--to,
/// --log-line, or --request-id with --log.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("request").required(true).args(["from", "log_line", "request_id"])
))]
pub struct ExplainArgs {
    /// A policy file or folder.
    path: PathBuf,
    /// Source SPIFFE ID (the caller); needs --to.
    #[arg(long, value_name = "ID", requires = "to")]
    from: Option<String>,
    /// Destination SPIFFE ID (the workload called); needs --from.
    #[arg(
        long,
        value_name = "ID",
        requires = "from",
        conflicts_with_all = ["log_line", "request_id"]
    )]
    to: Option<String>,
    /// HTTP method, case-sensitive as on the wire (with --from/--to).
    #[arg(long, default_value = "GET", conflicts_with_all = ["log_line", "request_id"])]
    method: String,
    /// Explain a TCP connection (L4 mode, with --from/--to): no method, no path — allow rules
    /// naming methods or paths do not match, deny rules naming them do.
    #[arg(
        long,
        requires = "from",
        conflicts_with_all = ["method", "request_path", "log_line", "request_id"]
    )]
    tcp: bool,
    /// Request path (with --from/--to); normalized exactly as the proxy does; the query is
    /// ignored.
    #[arg(
        long = "path",
        value_name = "PATH",
        default_value = "/",
        conflicts_with_all = ["log_line", "request_id"]
    )]
    request_path: String,
    /// One decision-log line (its JSON object) to re-evaluate against this policy and compare
    /// with what was logged.
    #[arg(long, value_name = "JSON")]
    log_line: Option<String>,
    /// Re-evaluate the decision-log line with this request_id (the `x-request-id` of a 403)
    /// from the log given by --log.
    #[arg(long, value_name = "ID", requires = "log")]
    request_id: Option<String>,
    /// The log to search for --request-id (`-` reads stdin); other lines, JSON or not, are
    /// skipped.
    #[arg(
        long,
        value_name = "FILE",
        requires = "request_id",
        conflicts_with_all = ["from", "log_line"]
    )]
    log: Option<PathBuf>,
    /// Print the explanation as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `policy explain`.
pub(super) fn run(args: ExplainArgs) -> anyhow::Result<Outcome> {
    let compiled = match policy::load(&args.path) {
        Ok(p) => p,
        Err(errors) => return Ok(report_invalid(&errors, args.json)),
    };
    let (asked, logged) = args.input()?;
    let req = asked.request();
    let report = if asked.tcp {
        let rules = compiled.explain_connection_rules(&req);
        Report {
            policy: &compiled,
            req: &req,
            explanation: connection_explanation(&compiled, &req, &rules),
            rules,
            tcp: true,
        }
    } else {
        Report {
            policy: &compiled,
            req: &req,
            explanation: compiled.explain(&req),
            rules: compiled.explain_rules(&req),
            tcp: false,
        }
    };
    let version = compiled.version();
    let compared = logged
        .as_ref()
        .map(|line| Comparison::new(line, report.explanation.verdict, version));
    if args.json {
        println!("{}", report.json(compared.as_ref()));
    } else {
        print!("{}", report.text(compared.as_ref()));
    }
    Ok(Outcome::Success)
}

impl ExplainArgs {
    /// The request to explain, and the log line it came from (if any).
    fn input(&self) -> anyhow::Result<(Asked, Option<LogLine>)> {
        if let Some(text) = &self.log_line {
            return from_line(LogLine::parse(text)?);
        }
        if let (Some(id), Some(log)) = (&self.request_id, &self.log) {
            let (line, count) = log_line::find(id, log)?;
            if count > 1 {
                let at = line.at.as_deref().unwrap_or("-");
                eprintln!(
                    "note: {count} lines carry request_id `{id}`; explaining the first ({at})"
                );
            }
            return from_line(line);
        }
        let (Some(from), Some(to)) = (&self.from, &self.to) else {
            bail!("give --from and --to, --log-line, or --request-id with --log");
        };
        let parties = Parties {
            source: from,
            destination: to,
            method: &self.method,
            path: &self.request_path,
        };
        Ok((Asked::parse(&parties, &FLAGS, self.tcp)?, None))
    }
}

/// The request recorded by a log line.
fn from_line(line: LogLine) -> anyhow::Result<(Asked, Option<LogLine>)> {
    let asked = Asked::parse(&line.parties()?, &LOGGED, line.is_tcp())?;
    Ok((asked, Some(line)))
}

/// How the request's parts are called in error messages.
struct Names {
    source: &'static str,
    destination: &'static str,
    path: &'static str,
}

const FLAGS: Names = Names {
    source: "--from",
    destination: "--to",
    path: "--path",
};

const LOGGED: Names = Names {
    source: "source_id",
    destination: "destination_id",
    path: "logged path",
};

/// A parsed request, owned so it can lend a [`Request`].
struct Asked {
    source: SpiffeId,
    destination: SpiffeId,
    method: String,
    path: NormalizedPath,
    /// A TCP connection: `method` is empty and `path` the root, neither is read.
    tcp: bool,
}

impl Asked {
    /// Validates the IDs and normalizes the path as the proxy does (the query is dropped).
    fn parse(parties: &Parties<'_>, names: &Names, tcp: bool) -> anyhow::Result<Self> {
        let id = |name: &str, value: &str| {
            SpiffeId::parse(value).with_context(|| format!("{name} `{value}`"))
        };
        let source = id(names.source, parties.source)?;
        let destination = id(names.destination, parties.destination)?;
        if tcp {
            return Ok(Self {
                source,
                destination,
                method: String::new(),
                path: NormalizedPath::root(),
                tcp,
            });
        }
        let without_query = parties.path.split('?').next().unwrap_or(parties.path);
        let path = normalize(without_query).with_context(|| {
            format!(
                "{} `{}` would be refused with 400",
                names.path, parties.path
            )
        })?;
        Ok(Self {
            source,
            destination,
            method: parties.method.to_owned(),
            path,
            tcp,
        })
    }

    fn request(&self) -> Request<'_> {
        Request {
            source: &self.source,
            destination: &self.destination,
            method: &self.method,
            path: &self.path,
        }
    }
}

/// Everything printed about one request.
struct Report<'a, 'p> {
    policy: &'p CompiledPolicy,
    req: &'a Request<'a>,
    /// Decision (from `decide`), segments, matching rules.
    explanation: Explanation<'p>,
    /// Decision path and candidate rules.
    rules: RuleExplanation<'p>,
    /// A TCP connection rather than a request.
    tcp: bool,
}

/// What `explain` reports for a request, for a TCP connection: the decision as the sidecar
/// makes it, both parties' segments, and the rules that matched.
fn connection_explanation<'p>(
    policy: &'p CompiledPolicy,
    req: &Request<'_>,
    rules: &RuleExplanation<'p>,
) -> Explanation<'p> {
    let matched = rules
        .candidates
        .iter()
        .filter(|c| matches!(c.check, Check::Matched | Check::DryRun))
        .map(|c| c.rule)
        .collect();
    Explanation {
        verdict: policy.decide_connection(req.source, req.destination),
        source_segments: policy.segment_names(req.source),
        destination_segments: policy.segment_names(req.destination),
        matched,
    }
}

impl Report<'_, '_> {
    fn json(&self, compared: Option<&Comparison<'_, '_>>) -> Value {
        let (p, req, e) = (self.policy, self.req, &self.explanation);
        let matched: Vec<_> = e
            .matched
            .iter()
            .map(|r| json!({"name": r.name, "effect": effect(r), "at": p.locate(r.at)}))
            .collect();
        let mut out = json!({
            "decision": e.verdict.decision.as_str(),
            "rule": e.verdict.rule_label(),
            "reason": e.verdict.reason.as_str(),
            "policy_version": p.version(),
            "source_id": req.source.as_str(),
            "destination_id": req.destination.as_str(),
            "protocol": if self.tcp { "tcp" } else { "http" },
            "method": req.method,
            "path": if self.tcp { "" } else { req.path.as_str() },
            "source_segments": e.source_segments,
            "destination_segments": e.destination_segments,
            "matched_rules": matched,
            "decision_path": self.rules.decision_path(),
            "candidates": self.candidates_json(),
        });
        if let (Some(c), Value::Object(fields)) = (compared, &mut out)
            && let Value::Object(more) = c.json()
        {
            fields.extend(more);
        }
        out
    }

    fn candidates_json(&self) -> Vec<Value> {
        let rules = &self.rules;
        let row = |c: &policy::Candidate<'_>| {
            json!({
                "name": c.rule.name,
                "effect": effect(c.rule),
                "matched": matches!(c.check, Check::Matched | Check::DryRun),
                "decides": rules.decides(c),
                "check": c.check.as_str(),
                "why_not": rules.why_not(c, self.policy, self.req),
                "at": self.policy.locate(c.rule.at),
            })
        };
        rules.candidates.iter().map(row).collect()
    }

    fn text(&self, compared: Option<&Comparison<'_, '_>>) -> String {
        let mut out = compared.map_or(String::new(), |c| c.text(self.policy.version()));
        out.push_str(&self.summary_text());
        out.push_str(&format!("decision path:  {}\n", self.rules.decision_path()));
        out.push_str(&self.candidate_table());
        out
    }

    /// The decision, both parties with their segments, and the rules that matched.
    fn summary_text(&self) -> String {
        let (p, req, e) = (self.policy, self.req, &self.explanation);
        let segs = |s: &[&str]| match s {
            [] => "no segment".to_owned(),
            _ => s.join(", "),
        };
        let mut out = format!(
            "decision:       {}\nrule:           {}\nreason:         {}\n\
             source:         {} ({})\ndestination:    {} ({})\nrequest:        {}\n\
             policy version: {}\n",
            e.verdict.decision.as_str(),
            e.verdict.rule_label(),
            e.verdict.reason.as_str(),
            req.source,
            segs(&e.source_segments),
            req.destination,
            segs(&e.destination_segments),
            if self.tcp {
                "TCP connection (no method, no path)".to_owned()
            } else {
                format!("{} {}", req.method, req.path)
            },
            p.version(),
        );
        if e.matched.is_empty() {
            out.push_str("matching rules: none\n");
        } else {
            out.push_str("matching rules:\n");
            for r in &e.matched {
                let at = p.locate(r.at);
                out.push_str(&format!("  {:<15} {:<40} {at}\n", effect(r), r.name));
            }
        }
        out
    }

    /// Every candidate rule: name, effect, matched, why not, file:line:col.
    fn candidate_table(&self) -> String {
        let rules = &self.rules;
        if rules.candidates.is_empty() {
            return "candidate rules: none (no rule selects the source or the destination)\n"
                .into();
        }
        let mut rows = vec![["RULE", "EFFECT", "MATCHED", "WHY NOT", "AT"].map(String::from)];
        for c in &rules.candidates {
            let matched = match c.check {
                Check::Missed(_) => "no",
                Check::Expired => "expired",
                Check::Matched | Check::DryRun => "yes",
            };
            let why = rules.why_not(c, self.policy, self.req);
            rows.push([
                c.rule.name.clone(),
                effect(c.rule).to_owned(),
                matched.to_owned(),
                why.unwrap_or_else(|| "decides".to_owned()),
                self.policy.locate(c.rule.at),
            ]);
        }
        format!("candidate rules:\n{}", aligned(&rows))
    }
}

/// Rows as columns padded to their widest cell, each line indented by two spaces.
fn aligned(rows: &[[String; 5]]) -> String {
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..5).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = (0..4)
            .map(|i| format!("{:<w$}", row[i], w = widths[i]))
            .collect();
        out.push_str(&format!("  {}  {}\n", cells.join("  "), row[4]));
    }
    out
}

/// A rule's effect as printed: `allow`, `deny` or `deny (dry run)`.
fn effect(rule: &policy::Rule) -> &'static str {
    match (rule.effect, rule.dry_run) {
        (Effect::Allow, _) => "allow",
        (Effect::Deny, false) => "deny",
        (Effect::Deny, true) => "deny (dry run)",
    }
}
