//! Log output: one line per event on stderr, which journald captures. Colours only on a
//! terminal; `RUST_LOG` (the same `level,target=level` directives) overrides the configured
//! filter. The filter is tracing-subscriber's `Targets` (plain prefixes, no regular
//! expressions): the config only ever says `target=level`, and the regex engine that
//! `EnvFilter` needs would be a few hundred KiB of the board binary.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `directives` describe; `None` when they do not parse.
pub fn targets(directives: &str) -> Option<Targets> {
    Targets::from_str(directives).ok()
}

/// `filter` is `config::Logging::filter()`'s directive list.
pub fn init(filter: &str) {
    let from_env = std::env::var("RUST_LOG").ok().and_then(|v| targets(&v));
    let filter = from_env
        .or_else(|| targets(filter))
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let out = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(out)
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_configs_directives_parse_with_the_most_specific_target_winning() {
        let t = targets("warn,sled=warn,pubky_edge::http=debug,pubky_edge=info").unwrap();
        assert!(t.would_enable("pubky_edge::http::server", &Level::DEBUG));
        assert!(!t.would_enable("pubky_edge::store", &Level::DEBUG));
        assert!(t.would_enable("pubky_edge::store", &Level::INFO));
        assert!(!t.would_enable("sled::pagecache", &Level::INFO));
        assert!(!t.would_enable("mdns_sd", &Level::INFO));
        assert!(t.would_enable("mdns_sd", &Level::WARN));
        assert!(targets("pubky_edge=loud").is_none());
    }
}
