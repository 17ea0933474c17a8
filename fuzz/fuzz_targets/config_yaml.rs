//! The sidecar config: YAML → `RawConfig` (`parse_yaml`) → `Config::from_raw` (every value
//! resolved: addresses, SPIFFE IDs, listeners, TCP destinations, limits), on arbitrary text.
//! Asserted: no panic; every YAML error has a message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use segward::config::{Config, ConfigError, parse_yaml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_yaml("fuzz.yaml", text) {
        Ok(raw) => {
            if let Ok(config) = Config::from_raw(raw, Path::new("/nonexistent/base")) {
                let _ = config.warnings();
            }
        }
        Err(ConfigError::Yaml { message, .. }) => assert!(!message.is_empty()),
        Err(_) => {}
    }
});
