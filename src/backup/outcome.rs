//! The outcome of the last backup, kept in `<data>/backup/last.json` by whoever made it
//! (the CLI, the nightly timer), and read by `status`, the metrics and the dashboard. A
//! backup that failed, or a last success older than [`STALE_SECS`], is a problem.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A last successful backup older than this is reported as a problem.
pub const STALE_SECS: u64 = 2 * 24 * 3600;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// When the last attempt finished (seconds since the epoch).
    pub attempted_secs: u64,
    pub ok: bool,
    pub dest: String,
    /// The point made, or why it failed.
    pub detail: String,
    pub last_success_secs: Option<u64>,
    pub last_success_point: Option<String>,
}

fn path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(super::BOX_DIR).join("last.json")
}

impl Outcome {
    pub fn load(data_dir: &Path) -> Option<Outcome> {
        serde_json::from_slice(&std::fs::read(path(data_dir)).ok()?).ok()
    }

    /// Records an attempt, keeping the last success across failures.
    pub fn record(
        data_dir: &Path,
        now_secs: u64,
        dest: &Path,
        result: Result<&str, &str>,
    ) -> anyhow::Result<Outcome> {
        let prev = Self::load(data_dir).unwrap_or_default();
        let mut o = Outcome {
            attempted_secs: now_secs,
            ok: result.is_ok(),
            dest: dest.display().to_string(),
            detail: match result {
                Ok(p) | Err(p) => p.to_string(),
            },
            last_success_secs: prev.last_success_secs,
            last_success_point: prev.last_success_point,
        };
        if let Ok(point) = result {
            o.last_success_secs = Some(now_secs);
            o.last_success_point = Some(point.to_string());
        }
        std::fs::create_dir_all(data_dir.join(super::BOX_DIR))?;
        super::write_private(&path(data_dir), &serde_json::to_vec_pretty(&o)?)?;
        Ok(o)
    }

    /// What is wrong, if anything: the last attempt failed, or the last success is stale.
    pub fn problem(&self, now_secs: u64) -> Option<String> {
        if !self.ok {
            return Some(format!("the last backup failed: {}", self.detail));
        }
        match self.last_success_secs {
            Some(t) if now_secs.saturating_sub(t) > STALE_SECS => Some(format!(
                "the last backup is {} hours old",
                now_secs.saturating_sub(t) / 3600
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_the_last_success_and_age_makes_a_problem() {
        let d = tempfile::tempdir().unwrap();
        assert!(Outcome::load(d.path()).is_none());
        let dest = Path::new("/mnt/usb/pubky-edge");
        let o = Outcome::record(d.path(), 1000, dest, Ok("2026-12-03T00-00-00Z")).unwrap();
        assert_eq!(o.problem(1000), None);
        assert!(o
            .problem(1000 + STALE_SECS + 3600)
            .unwrap()
            .contains("hours old"));
        let o =
            Outcome::record(d.path(), 2000, dest, Err("no disk labelled PUBKY-BACKUP")).unwrap();
        assert_eq!(Outcome::load(d.path()).unwrap(), o);
        assert_eq!(o.last_success_secs, Some(1000));
        assert_eq!(
            o.problem(2000).unwrap(),
            "the last backup failed: no disk labelled PUBKY-BACKUP"
        );
    }
}
