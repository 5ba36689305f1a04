//! `mirrors.toml` (`Config::parse`) and the value parsers it is built from
//! (`config::parse_byte_size`, `parse_mirror_url`, `parse_proxy_url`).
//!
//! Invariants: a refusal names a line and column inside the text; an accepted config is
//! usable as is (every duration, size and count non-zero, every URL of an allowed scheme,
//! every per-mirror proxy belongs to a listed mirror) and parsing is deterministic; a parsed
//! byte size is positive.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qasid::config::{self, Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Publisher keys may name .pub files, resolved against the config's folder or absolute:
    // keep the fuzzer away from /proc, /sys and devices, where reading can block or take GBs.
    if ["/proc", "/sys", "/dev"].iter().any(|p| text.contains(p)) {
        return;
    }
    if let Ok(n) = config::parse_byte_size(text) {
        assert!(n > 0);
    }
    if let Ok(url) = config::parse_mirror_url(text) {
        assert!(matches!(url.scheme(), "http" | "https" | "file"));
    }
    if let Ok(url) = config::parse_proxy_url(text) {
        assert!(matches!(
            url.scheme(),
            "http" | "https" | "socks5" | "socks5h"
        ));
    }

    let path = Path::new("/nonexistent-qasid-fuzz/mirrors.toml");
    match Config::parse(text, path) {
        Ok(config) => {
            check_usable(&config);
            assert_eq!(
                Config::parse(text, path).unwrap(),
                config,
                "parse is deterministic"
            );
        }
        Err(ConfigError::Invalid {
            line,
            column,
            message,
            ..
        }) => {
            let lines = text.split('\n').count();
            assert!(
                line >= 1 && line <= lines,
                "line {line} of {lines}: {message}"
            );
            let width = text.split('\n').nth(line - 1).unwrap().chars().count();
            assert!(
                column >= 1 && column <= width + 1,
                "column {column} of {width}: {message}"
            );
            assert!(!message.is_empty());
        }
        Err(e @ ConfigError::Read { .. }) => panic!("parse never reads the config itself: {e}"),
    }
});

fn check_usable(config: &Config) {
    let m = &config.mirror;
    assert!(m.max_push_bytes > 0 && m.max_connections > 0);
    assert!(!m.store.as_os_str().is_empty());
    for d in [m.header_timeout, m.idle_timeout, m.shutdown_grace] {
        assert!(!d.is_zero());
    }
    let s = &config.sync;
    assert!(s.max_downloads > 0);
    for d in [s.interval, s.connect_timeout, s.read_timeout, s.prune_grace] {
        assert!(!d.is_zero());
    }
    let r = &config.reader;
    assert!(!r.race_window.is_zero() && !r.hedge_delay.is_zero());
    for url in r
        .mirrors
        .iter()
        .chain(config.upstreams.iter().map(|u| &u.url))
    {
        assert!(matches!(url.scheme(), "http" | "https" | "file"));
    }
    let proxies = r
        .proxy
        .iter()
        .chain(config.upstreams.iter().filter_map(|u| u.proxy.as_ref()))
        .chain(r.mirror_proxies.iter().map(|(_, p)| p));
    for proxy in proxies {
        assert!(matches!(
            proxy.scheme(),
            "http" | "https" | "socks5" | "socks5h"
        ));
    }
    for (mirror, _) in &r.mirror_proxies {
        assert!(r.mirrors.contains(mirror));
    }
    assert_eq!(config.publisher_keys().len(), config.publishers.len());
}
