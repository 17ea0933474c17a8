//! `detect:` — probe detection at the sidecar (docs/probes.md): how many distinct denied
//! targets within which window make a probe, and what the sidecar does about it.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::limits::parse_duration;

/// `detect:` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetect {
    /// `detect.probe`: absent turns the detector (and tripwires' action) off.
    #[serde(default)]
    pub probe: Option<RawProbe>,
}

/// `detect.probe` as written; every key has a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// Distinct denied targets of one source within `window` that make a probe (default 5).
    #[serde(default)]
    pub distinct_denied: Option<u64>,
    /// How long a denied target is remembered (default `60s`).
    #[serde(default)]
    pub window: Option<String>,
    /// `alert` (default) or `contain`.
    #[serde(default)]
    pub action: Option<ProbeAction>,
    /// How long a containment lasts (default `15m`).
    #[serde(default)]
    pub contain_for: Option<String>,
    /// How many sources are tracked at once (default 4096).
    #[serde(default)]
    pub max_sources: Option<u64>,
}

/// What the sidecar does on a probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeAction {
    /// A decision-log line, the metric and `/probes`; nothing changes on the data plane.
    #[default]
    Alert,
    /// The alert, and the source is refused on this sidecar for `contain_for`, its open
    /// connections cut.
    Contain,
}

impl ProbeAction {
    /// The word of the config, the log line and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Contain => "contain",
        }
    }
}

/// `detect.probe`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Distinct denied targets within `window` that make a probe.
    pub distinct_denied: usize,
    /// How long a denied target counts.
    pub window: Duration,
    /// Alert or contain.
    pub action: ProbeAction,
    /// How long a containment lasts.
    pub contain_for: Duration,
    /// Sources tracked at once: the bound of the detector's memory.
    pub max_sources: usize,
}

/// The smallest and largest `distinct_denied`: one denied request is not a probe (use a
/// tripwire for that), and a source's remembered targets are at most this many.
pub const DISTINCT_DENIED: (u64, u64) = (2, 64);
/// The smallest and largest `max_sources`.
pub const MAX_SOURCES: (u64, u64) = (16, 1_000_000);

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            distinct_denied: 5,
            window: Duration::from_secs(60),
            action: ProbeAction::Alert,
            contain_for: Duration::from_secs(15 * 60),
            max_sources: 4096,
        }
    }
}

/// Resolves `detect:`; `None` when `detect.probe` is absent (the detector is off).
///
/// # Errors
/// [`ConfigError::BadLimit`] naming the `detect.probe.*` key.
pub fn resolve_detect(raw: &RawDetect, file: &str) -> Result<Option<ProbeSettings>, ConfigError> {
    let Some(raw) = &raw.probe else {
        return Ok(None);
    };
    let bad = |key: &str, value: String, problem: &str| ConfigError::BadLimit {
        file: file.to_owned(),
        key: format!("detect.probe.{key}"),
        value,
        problem: problem.to_owned(),
    };
    let mut settings = ProbeSettings::default();
    if let Some(n) = raw.distinct_denied {
        let (lo, hi) = DISTINCT_DENIED;
        if !(lo..=hi).contains(&n) {
            let problem = format!("must be a number from {lo} to {hi}");
            return Err(bad("distinct_denied", n.to_string(), &problem));
        }
        settings.distinct_denied = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = raw.max_sources {
        let (lo, hi) = MAX_SOURCES;
        if !(lo..=hi).contains(&n) {
            let problem = format!("must be a number from {lo} to {hi}");
            return Err(bad("max_sources", n.to_string(), &problem));
        }
        settings.max_sources = usize::try_from(n).unwrap_or(usize::MAX);
    }
    let durations = [
        ("window", &raw.window, &mut settings.window),
        ("contain_for", &raw.contain_for, &mut settings.contain_for),
    ];
    for (key, text, slot) in durations {
        if let Some(text) = text {
            *slot = parse_duration(text).ok_or_else(|| {
                let problem = "is not a duration; write e.g. 500ms, 60s, 15m or 1h (at most 24h)";
                bad(key, text.clone(), problem)
            })?;
        }
    }
    settings.action = raw.action.unwrap_or_default();
    Ok(Some(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(yaml: &str) -> Result<Option<ProbeSettings>, ConfigError> {
        let raw: RawDetect = serde_saphyr::from_str(yaml).unwrap();
        resolve_detect(&raw, "c.yaml")
    }

    #[test]
    fn absent_probe_is_off_and_an_empty_one_takes_the_documented_defaults() {
        assert_eq!(probe("{}").unwrap(), None);
        let defaults = probe("probe: {}").unwrap().unwrap();
        assert_eq!(defaults, ProbeSettings::default());
        assert_eq!(defaults.distinct_denied, 5);
        assert_eq!(defaults.window, Duration::from_secs(60));
        assert_eq!(defaults.action, ProbeAction::Alert);
        assert_eq!(defaults.contain_for, Duration::from_secs(900));
        assert_eq!(defaults.max_sources, 4096);
    }

    #[test]
    fn every_key_is_read_and_checked() {
        let s = probe(
            "probe: { distinct_denied: 3, window: 10s, action: contain, contain_for: 2m, max_sources: 100 }",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s,
            ProbeSettings {
                distinct_denied: 3,
                window: Duration::from_secs(10),
                action: ProbeAction::Contain,
                contain_for: Duration::from_secs(120),
                max_sources: 100,
            }
        );
        for (yaml, key) in [
            (
                "probe: { distinct_denied: 1 }",
                "detect.probe.distinct_denied",
            ),
            (
                "probe: { distinct_denied: 65 }",
                "detect.probe.distinct_denied",
            ),
            ("probe: { max_sources: 15 }", "detect.probe.max_sources"),
            ("probe: { window: 0s }", "detect.probe.window"),
            ("probe: { window: 60 }", "detect.probe.window"),
            ("probe: { contain_for: 2d }", "detect.probe.contain_for"),
        ] {
            match probe(yaml) {
                Err(ConfigError::BadLimit { key: k, .. }) => assert_eq!(k, key, "{yaml}"),
                other => panic!("{yaml}: {other:?}"),
            }
        }
        assert!(serde_saphyr::from_str::<RawDetect>("probe: { action: block }").is_err());
        assert!(serde_saphyr::from_str::<RawDetect>("probe: { thresold: 3 }").is_err());
    }
}
