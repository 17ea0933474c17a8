//! `limits:` and `decision_log:` (docs/security.md "bounded resources", §6): the knobs that keep
//! a slow or hostile client from starving the sidecar, and how many allowed requests the
//! decision log writes. Every knob has a safe default; a config may set any subset.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Largest `limits.worker_threads` / `TOKIO_WORKER_THREADS` accepted.
pub const MAX_LOOPS: usize = 256;

/// The environment variable consulted when the config does not set `limits.worker_threads`
/// (tokio's own name for a runtime's thread budget; the peer benchmark sets it).
pub const THREADS_ENV: &str = "TOKIO_WORKER_THREADS";

/// `limits:` as written; durations are strings such as `500ms`, `10s`, `2m`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Open connections per listener; further clients wait in the accept backlog.
    pub max_connections: Option<u64>,
    /// Request head size (HTTP/1.1 buffer, HTTP/2 header list); larger → 431.
    pub max_header_bytes: Option<u64>,
    /// A request head not complete within this is dropped (slowloris).
    pub header_read_timeout: Option<String>,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Option<String>,
    /// A TLS handshake not complete within this is dropped.
    pub tls_handshake_timeout: Option<String>,
    /// Connecting to the upstream or a destination; past it → 502.
    pub upstream_connect_timeout: Option<String>,
    /// Waiting for the upstream's response headers; past it → 504.
    pub upstream_timeout: Option<String>,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Option<String>,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: Option<u32>,
    /// Event loops (threads) that run the proxy; unset: `TOKIO_WORKER_THREADS`, else 1.
    pub worker_threads: Option<u32>,
}

/// `decision_log:` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecisionLog {
    /// Fraction (0 to 1) of allowed requests logged; denies are always logged.
    pub allowed_sample_rate: Option<f64>,
    /// At most this many allowed-request lines per second; 0 = no cap.
    pub allowed_per_second: Option<u64>,
}

/// The resolved limits and limits of the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections per listener.
    pub max_connections: usize,
    /// Request head size limit, bytes.
    pub max_header_bytes: usize,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 keep-alive: a PING this often, closing the connection if its answer takes
    /// longer than this. Not a `limits:` key; always the default.
    pub h2_keep_alive: Duration,
    /// Slowloris bound: the whole request head within this.
    pub header_read: Duration,
    /// Idle connections are closed after this.
    pub idle: Duration,
    /// A TLS handshake that has not completed by then is dropped.
    pub tls_handshake: Duration,
    /// Connecting to the upstream or an outbound destination; past it → 502.
    pub upstream_connect: Duration,
    /// From sending the request to the upstream's response headers; past it → 504.
    pub upstream_response: Duration,
    /// On SIGTERM, how long in-flight requests may take to finish before segward exits.
    pub drain: Duration,
    /// Event loops that run the proxy (1 to [`MAX_LOOPS`]), each a single-threaded loop with
    /// its own upstream pools; connections are spread over them. Resolved from
    /// `limits.worker_threads`, else `TOKIO_WORKER_THREADS`, else 1. Blocking work (policy
    /// compiles, file reads) always runs on separate short-lived threads.
    pub worker_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            h2_max_concurrent_streams: 100,
            h2_keep_alive: Duration::from_secs(20),
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            tls_handshake: Duration::from_secs(10),
            upstream_connect: Duration::from_secs(5),
            upstream_response: Duration::from_secs(30),
            drain: Duration::from_secs(30),
            worker_threads: 1,
        }
    }
}

/// How many allowed requests the decision log writes (denies and would-denies: all).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionLogSettings {
    /// Fraction of allowed requests logged, 0 to 1.
    pub allowed_sample_rate: f64,
    /// Cap on allowed-request lines per second; `None` = no cap.
    pub allowed_per_second: Option<u64>,
}

impl Default for DecisionLogSettings {
    fn default() -> Self {
        Self {
            allowed_sample_rate: 1.0,
            allowed_per_second: None,
        }
    }
}

/// hyper refuses HTTP/1.1 buffers under 8 KiB.
const MIN_HEADER_BYTES: u64 = 8 * 1024;
/// More than this is not a header limit any more.
const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// Resolves `limits:`; absent keys keep their defaults, except the event-loop count, which
/// falls back to `threads_env` (the value of `TOKIO_WORKER_THREADS`, if set).
///
/// # Errors
/// [`ConfigError::BadLimit`] naming the key; [`ConfigError::BadEnv`] for a bad
/// `TOKIO_WORKER_THREADS` when the config does not set `limits.worker_threads`.
pub fn resolve_limits(
    raw: &RawLimits,
    file: &str,
    threads_env: Option<&str>,
) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    if let Some(n) = raw.max_connections {
        limits.max_connections = within(file, "max_connections", n, 1..=1_000_000)? as usize;
    }
    if let Some(n) = raw.max_header_bytes {
        let range = MIN_HEADER_BYTES..=MAX_HEADER_BYTES;
        limits.max_header_bytes = within(file, "max_header_bytes", n, range)? as usize;
    }
    if let Some(n) = raw.h2_max_concurrent_streams {
        limits.h2_max_concurrent_streams = within(file, "h2_max_concurrent_streams", n, 1..)?;
    }
    limits.worker_threads = worker_threads(raw.worker_threads, threads_env, file)?;
    resolve_timeouts(raw, &mut limits, file)?;
    Ok(limits)
}

/// `limits.<key>` must lie in `range`; the error says the range as the config spells it.
fn within<T, R>(file: &str, key: &str, n: T, range: R) -> Result<T, ConfigError>
where
    T: PartialOrd + fmt::Display + Copy,
    R: RangeBounds<T> + fmt::Debug,
{
    if range.contains(&n) {
        return Ok(n);
    }
    let problem = match (range.start_bound(), range.end_bound()) {
        (Bound::Included(lo), Bound::Included(hi)) => format!("must be {lo} to {hi}"),
        (Bound::Included(lo), _) => format!("must be at least {lo}"),
        _ => format!("must be in {range:?}"),
    };
    Err(bad_limit(file, key, n.to_string(), &problem))
}

/// The event-loop count: the config's key, else `TOKIO_WORKER_THREADS`, else 1.
fn worker_threads(
    configured: Option<u32>,
    threads_env: Option<&str>,
    file: &str,
) -> Result<usize, ConfigError> {
    match (configured, threads_env) {
        (Some(n), _) => loops(&n.to_string())
            .ok_or_else(|| bad_limit(file, "worker_threads", n.to_string(), &loops_problem())),
        (None, Some(text)) => loops(text).ok_or_else(|| ConfigError::BadEnv {
            file: file.to_owned(),
            variable: THREADS_ENV,
            value: text.to_owned(),
            problem: format!("{} (or unset)", loops_problem()),
        }),
        (None, None) => Ok(1),
    }
}

/// The `limits.*_timeout` keys, each read by the one duration grammar.
fn resolve_timeouts(raw: &RawLimits, limits: &mut Limits, file: &str) -> Result<(), ConfigError> {
    let timeouts = [
        (
            "header_read_timeout",
            &raw.header_read_timeout,
            &mut limits.header_read,
        ),
        ("idle_timeout", &raw.idle_timeout, &mut limits.idle),
        (
            "tls_handshake_timeout",
            &raw.tls_handshake_timeout,
            &mut limits.tls_handshake,
        ),
        (
            "upstream_connect_timeout",
            &raw.upstream_connect_timeout,
            &mut limits.upstream_connect,
        ),
        (
            "upstream_timeout",
            &raw.upstream_timeout,
            &mut limits.upstream_response,
        ),
        ("drain_timeout", &raw.drain_timeout, &mut limits.drain),
    ];
    for (key, text, slot) in timeouts {
        if let Some(text) = text {
            *slot = parse_duration(text).ok_or_else(|| {
                let problem = "is not a duration; write e.g. 500ms, 10s, 2m or 1h";
                bad_limit(file, key, text.clone(), problem)
            })?;
        }
    }
    Ok(())
}

fn bad_limit(file: &str, key: &str, value: String, problem: &str) -> ConfigError {
    ConfigError::BadLimit {
        file: file.to_owned(),
        key: format!("limits.{key}"),
        value,
        problem: problem.to_owned(),
    }
}

/// An event-loop count from 1 to [`MAX_LOOPS`].
fn loops(text: &str) -> Option<usize> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LOOPS).contains(n))
}

fn loops_problem() -> String {
    format!("must be a number from 1 to {MAX_LOOPS}")
}

/// Resolves `decision_log:`.
///
/// # Errors
/// [`ConfigError::BadLimit`] naming the key.
pub fn resolve_decision_log(
    raw: &RawDecisionLog,
    file: &str,
) -> Result<DecisionLogSettings, ConfigError> {
    let mut settings = DecisionLogSettings::default();
    if let Some(rate) = raw.allowed_sample_rate {
        if !(0.0..=1.0).contains(&rate) {
            return Err(ConfigError::BadLimit {
                file: file.to_owned(),
                key: "decision_log.allowed_sample_rate".to_owned(),
                value: rate.to_string(),
                problem: "must be from 0 (log no allowed request) to 1 (log all)".to_owned(),
            });
        }
        settings.allowed_sample_rate = rate;
    }
    settings.allowed_per_second = raw.allowed_per_second.filter(|&n| n > 0);
    Ok(settings)
}

/// `500ms`, `10s`, `2m`, `1h`: a positive whole number and a unit, at most a day (the
/// grammar of [`crate::duration::TIMEOUT`]).
pub fn parse_duration(text: &str) -> Option<Duration> {
    crate::duration::parse(text, &crate::duration::TIMEOUT).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_whole_number_and_a_unit() {
        let table = [
            ("500ms", Some(Duration::from_millis(500))),
            ("10s", Some(Duration::from_secs(10))),
            ("2m", Some(Duration::from_secs(120))),
            ("1h", Some(Duration::from_secs(3600))),
            ("0s", None),
            ("10", None),
            ("s", None),
            ("1.5s", None),
            ("-1s", None),
            ("10 s", None),
            ("2d", None),
            ("25h", None),
            ("99999999999999999999s", None),
        ];
        for (text, expected) in table {
            assert_eq!(parse_duration(text), expected, "{text}");
        }
    }

    #[test]
    fn absent_limits_keep_the_defaults_and_set_ones_apply() {
        assert_eq!(
            resolve_limits(&RawLimits::default(), "f", None).unwrap(),
            Limits::default()
        );
        let raw = RawLimits {
            max_connections: Some(2),
            header_read_timeout: Some("250ms".into()),
            upstream_timeout: Some("1s".into()),
            worker_threads: Some(2),
            ..RawLimits::default()
        };
        let limits = resolve_limits(&raw, "f", None).unwrap();
        assert_eq!(limits.worker_threads, 2);
        assert_eq!(Limits::default().worker_threads, 1);
        assert_eq!(limits.max_connections, 2);
        assert_eq!(limits.header_read, Duration::from_millis(250));
        assert_eq!(limits.upstream_response, Duration::from_secs(1));
        assert_eq!(limits.idle, Limits::default().idle);
    }

    #[test]
    fn out_of_range_limits_name_their_key() {
        let cases = [
            RawLimits {
                max_connections: Some(0),
                ..RawLimits::default()
            },
            RawLimits {
                max_header_bytes: Some(100),
                ..RawLimits::default()
            },
            RawLimits {
                h2_max_concurrent_streams: Some(0),
                ..RawLimits::default()
            },
            RawLimits {
                idle_timeout: Some("soon".into()),
                ..RawLimits::default()
            },
            RawLimits {
                worker_threads: Some(0),
                ..RawLimits::default()
            },
            RawLimits {
                worker_threads: Some(257),
                ..RawLimits::default()
            },
        ];
        for (raw, key) in cases.iter().zip([
            "limits.max_connections",
            "limits.max_header_bytes",
            "limits.h2_max_concurrent_streams",
            "limits.idle_timeout",
            "limits.worker_threads",
            "limits.worker_threads",
        ]) {
            let error = resolve_limits(raw, "f.yaml", None).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }

    #[test]
    fn event_loops_come_from_the_config_then_the_environment_then_one() {
        let configured = RawLimits {
            worker_threads: Some(3),
            ..RawLimits::default()
        };
        let count = |raw: &RawLimits, env| resolve_limits(raw, "f", env).map(|l| l.worker_threads);
        assert_eq!(count(&configured, Some("2")), Ok(3));
        let unset = RawLimits::default();
        assert_eq!(count(&unset, Some("2")), Ok(2));
        assert_eq!(count(&unset, Some(" 4 ")), Ok(4));
        assert_eq!(count(&unset, None), Ok(1));
        for bad in ["0", "257", "two", "", "-1"] {
            let error = count(&unset, Some(bad)).unwrap_err();
            assert_eq!(error.reason(), "bad-env", "{bad}");
            assert!(error.to_string().contains(THREADS_ENV), "{error}");
        }
    }

    #[test]
    fn limits_and_decision_log_are_read_from_yaml_and_unknown_keys_refused() {
        let yaml = "identity: { cert: c, key: k, bundles: { example.org: b } }\npolicy: p\n\
                    inbound: { listen: 127.0.0.1:0, upstream: 127.0.0.1:1 }\n\
                    limits: { max_connections: 5, idle_timeout: 2m }\n\
                    decision_log: { allowed_sample_rate: 0.5 }\n";
        let raw = super::super::parse_yaml("f.yaml", yaml).unwrap();
        assert_eq!(raw.limits.max_connections, Some(5));
        assert_eq!(raw.limits.idle_timeout.as_deref(), Some("2m"));
        assert_eq!(raw.decision_log.allowed_sample_rate, Some(0.5));
        let typo = yaml.replace("idle_timeout", "idle_timout");
        assert!(super::super::parse_yaml("f.yaml", &typo).is_err());
    }

    #[test]
    fn decision_log_sampling_is_a_fraction_and_zero_means_no_cap() {
        let raw = RawDecisionLog {
            allowed_sample_rate: Some(0.25),
            allowed_per_second: Some(0),
        };
        let settings = resolve_decision_log(&raw, "f").unwrap();
        assert_eq!(settings.allowed_sample_rate, 0.25);
        assert_eq!(settings.allowed_per_second, None);
        let bad = RawDecisionLog {
            allowed_sample_rate: Some(1.5),
            ..RawDecisionLog::default()
        };
        assert!(resolve_decision_log(&bad, "f").is_err());
    }
}
