//! Log output: one line per event on stderr, which journald captures. Colours only on a
//! terminal; `RUST_LOG` (the same `level,target=level` directives) overrides the configured
//! filter. The filter is tracing-subscriber's `Targets` (plain prefixes, no regular
//! expressions): the config only ever says `target=level`, and the regex engine that
//! `EnvFilter` needs would be a few hundred KiB of the board binary. The last
//! [`RECENT_LINES`] lines that pass the filter are also kept in memory for the dashboard.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::Mutex;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `directives` describe; `None` when they do not parse.
pub fn targets(directives: &str) -> Option<Targets> {
    Targets::from_str(directives).ok()
}

/// One log line kept for the dashboard.
#[derive(Debug, Clone)]
pub struct Line {
    pub at_secs: u64,
    pub level: tracing::Level,
    pub text: String,
}

/// Lines kept: enough for "what happened lately" at a few hundred bytes each.
pub const RECENT_LINES: usize = 300;

static RECENT: Mutex<VecDeque<Line>> = Mutex::new(VecDeque::new());

/// The most recent log lines at `min` or more severe, newest first.
pub fn recent(min: tracing::Level, limit: usize) -> Vec<Line> {
    let r = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    r.iter()
        .rev()
        .filter(|l| l.level <= min)
        .take(limit)
        .cloned()
        .collect()
}

/// Keeps what passes the filter in [`RECENT`] too.
struct Recent;

#[derive(Default)]
struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recent {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let mut line = text.0;
        if line.len() > 600 {
            let cut = (0..=600)
                .rev()
                .find(|&i| line.is_char_boundary(i))
                .unwrap_or(0);
            line.truncate(cut);
        }
        let mut r = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() >= RECENT_LINES {
            r.pop_front();
        }
        r.push_back(Line {
            at_secs: crate::clock::now_secs(),
            level: *event.metadata().level(),
            text: line,
        });
    }
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
        .with(Recent)
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn lines_that_pass_the_filter_are_kept_for_the_dashboard() {
        let sub = tracing_subscriber::registry()
            .with(Recent)
            .with(targets("warn").unwrap());
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(user = "abc", "a line to keep {}", 7);
            tracing::info!("filtered out");
        });
        let kept = recent(Level::INFO, 50);
        assert!(kept
            .iter()
            .any(|l| l.text == "a line to keep 7 user=abc" && l.level == Level::WARN));
        assert!(!kept.iter().any(|l| l.text.contains("filtered out")));
        assert!(recent(Level::ERROR, 50)
            .iter()
            .all(|l| l.level == Level::ERROR));
    }

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
