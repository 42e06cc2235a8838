//! Where this box stands as a primary, a standby or a box that was taken over, in words:
//! `pubky-edge status`, `standby status` and the dashboard's Health card say the same.

use std::path::Path;

use super::fence::Fenced;
use super::pairing::Pairing;
use super::state::{Follow, FollowStatus};

/// A standby that has not heard from its primary for this long, or a primary whose standby
/// has not asked for this long, needs a look.
const QUIET_SECS: u64 = 600;

/// What to say, and whether it needs the owner's attention.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `"standby:"` for this box's own role, `"standby box:"` for the box that follows it.
    pub label: &'static str,
    /// Empty: no standby on either side.
    pub lines: Vec<String>,
    pub bad: bool,
}

fn when(secs: u64) -> String {
    if secs == 0 {
        "never".into()
    } else {
        crate::clock::rfc3339(secs)
    }
}

impl Report {
    /// A report on this box's own role.
    fn own(lines: Vec<String>, bad: bool) -> Report {
        Report {
            label: "standby:",
            lines,
            bad,
        }
    }

    pub fn read(data_dir: &Path, now: u64) -> Report {
        if let Some(f) = Fenced::load(data_dir) {
            let lines = vec![
                format!(
                    "TAKEN OVER since {}: this box refuses writes and does not publish; \
                     the homeserver's newer record points to {}",
                    when(f.since),
                    f.record_points_to
                        .as_deref()
                        .unwrap_or("an address it does not name")
                ),
                format!(
                    "{} event(s) accepted here after the standby's last confirmed event {} \
                     are kept in this store and listed in {}",
                    f.unconfirmed_total,
                    f.standby_position,
                    Fenced::path(data_dir).display()
                ),
            ];
            return Report::own(lines, true);
        }
        if let Some(f) = Follow::load(data_dir) {
            if f.promoted {
                let line = format!(
                    "promoted: this box is the homeserver {} (was its standby)",
                    f.primary
                );
                return Report::own(vec![line], false);
            }
            if !f.copied {
                let line = format!(
                    "the first copy from {} was interrupted: run `standby pair` again",
                    f.primary
                );
                return Report::own(vec![line], true);
            }
            let s = FollowStatus::load(data_dir).unwrap_or_default();
            let quiet = now.saturating_sub(s.last_contact) > QUIET_SECS;
            let lines = vec![
                format!(
                    "following {} ({}), takeover {}",
                    f.primary,
                    f.at.map_or("found on the DHT".to_string(), |a| a.to_string()),
                    if f.takeover { "allowed" } else { "not allowed" }
                ),
                format!(
                    "at event {} of {}: {} behind, {} s; last contact {}{}",
                    s.local_head,
                    s.primary_head,
                    s.lag_events(),
                    s.lag_seconds(now),
                    when(s.last_contact),
                    s.last_error
                        .as_deref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ),
            ];
            return Report::own(lines, quiet || s.last_error.is_some());
        }
        match Pairing::load(data_dir).standby() {
            Some(p) => Report {
                label: "standby box:",
                lines: vec![format!(
                    "paired {}, takeover {}; it holds events up to {}, last seen {}",
                    when(p.paired_at),
                    if p.takeover { "allowed" } else { "not allowed" },
                    p.position,
                    when(p.last_seen)
                )],
                bad: now.saturating_sub(p.last_seen) > QUIET_SECS,
            },
            None => Report::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_without_a_standby_says_nothing_and_a_quiet_standby_needs_a_look() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Report::read(dir.path(), 1000), Report::default());
        let f = Follow {
            primary: "k".into(),
            at: None,
            token: "t".into(),
            takeover: true,
            sealed_key: None,
            copied: true,
            promoted: false,
            paired_at: 10,
        };
        f.save(dir.path()).unwrap();
        let r = Report::read(dir.path(), 10 + QUIET_SECS + 1);
        assert_eq!(r.label, "standby:");
        assert!(r.lines[0].starts_with("following k (found on the DHT), takeover allowed"));
        assert!(r.lines[1].contains("last contact never"), "{:?}", r.lines);
        assert!(r.bad);
    }
}
