//! What the last look at the release channel found, in `<data>/update.json`, for `status`
//! (and later the dashboard): written by `update check` and by the server's daily check.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::check::Found;
use crate::announce::worker::{load_json, save_json};

pub const STATE_FILE: &str = "update.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateState {
    pub checked_secs: u64,
    pub channel: String,
    /// The version that ran the check.
    pub running: String,
    /// "available", "up_to_date", "no_release", "refused" or "error".
    pub result: String,
    /// The channel's release, when one was read.
    pub version: Option<String>,
    /// Why it was refused, or what went wrong.
    pub detail: Option<String>,
}

impl UpdateState {
    pub fn load(data_dir: &Path) -> Option<UpdateState> {
        load_json(data_dir, STATE_FILE)
    }

    /// Records the outcome of a check of `channel`.
    pub fn record(data_dir: &Path, channel: &str, outcome: &anyhow::Result<Found>) {
        let (result, version, detail) = match outcome {
            Ok(Found::Available(m)) => ("available", Some(m.version.clone()), None),
            Ok(Found::UpToDate(m)) => ("up_to_date", Some(m.version.clone()), None),
            Ok(Found::NoRelease) => ("no_release", None, None),
            Ok(Found::Refused(e)) => ("refused", None, Some(e.to_string())),
            Ok(Found::FailedHere(m)) => ("failed_here", Some(m.version.clone()), None),
            Err(e) => ("error", None, Some(format!("{e:#}"))),
        };
        let st = UpdateState {
            checked_secs: crate::clock::now_secs(),
            channel: channel.into(),
            running: super::slots::Slots::at(data_dir).running(),
            result: result.into(),
            version,
            detail,
        };
        save_json(data_dir, STATE_FILE, &st);
    }

    /// An available release could not be installed: why, for `status` and the dashboard.
    pub fn not_installed(data_dir: &Path, why: &str) {
        if let Some(mut st) = UpdateState::load(data_dir) {
            st.detail = Some(why.to_string());
            save_json(data_dir, STATE_FILE, &st);
        }
    }

    /// The `status` line's text after `update:`.
    pub fn describe(&self) -> String {
        let when = crate::clock::rfc3339(self.checked_secs);
        let version = self.version.as_deref().unwrap_or("?");
        let detail = self.detail.as_deref().unwrap_or("");
        let what = match self.result.as_str() {
            "available" if !detail.is_empty() => format!(
                "{version} is available (this box runs {}) but was NOT INSTALLED: {detail}",
                self.running
            ),
            "available" => format!("{version} is available (this box runs {})", self.running),
            "up_to_date" => format!("up to date ({}; the channel has {version})", self.running),
            "failed_here" => format!(
                "{version} is out, but it failed on this box before and is not tried again ({} runs)",
                self.running
            ),
            "no_release" => "no release for this box in the channel".into(),
            "refused" => format!("the channel's release was REFUSED: {detail}"),
            _ => format!("the channel could not be read: {detail}"),
        };
        format!("{what} (channel {}, checked {when})", self.channel)
    }
}

/// What the metrics and the dashboard show of updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The version the box runs, and its slot (`None`: the installed binary).
    pub running: String,
    pub slot: Option<String>,
    /// A newer release the last look found (and not one that failed here).
    pub available: Option<String>,
    /// The last update: from, to, "updated" / "rolled_back" / "switched_by_hand", when.
    pub last: Option<super::slots::Outcome>,
    /// The household's hold on automatic updates.
    pub hold: Option<super::slots::Hold>,
}

impl Facts {
    /// Reads the small state files (blocking).
    pub fn read(data_dir: &Path) -> Facts {
        let slots = super::slots::Slots::at(data_dir);
        let available = UpdateState::load(data_dir)
            .filter(|st| st.result == "available")
            .and_then(|st| st.version);
        let slot = slots.running_slot();
        Facts {
            running: slots.version_of(slot.as_deref()),
            slot,
            available,
            last: slots.history().last,
            hold: slots.hold(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::manifest::ReleaseError;

    #[test]
    fn each_outcome_is_recorded_and_said() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(UpdateState::load(dir.path()), None);
        UpdateState::record(dir.path(), "stable", &Ok(Found::NoRelease));
        let st = UpdateState::load(dir.path()).unwrap();
        assert_eq!(
            (st.result.as_str(), st.running.as_str()),
            ("no_release", crate::update::manifest::RUNNING)
        );
        assert!(st
            .describe()
            .starts_with("no release for this box in the channel (channel stable, checked "));
        let refused = Ok(Found::Refused(ReleaseError::BadSignature));
        UpdateState::record(dir.path(), "testing", &refused);
        let said = UpdateState::load(dir.path()).unwrap().describe();
        assert!(
            said.contains("REFUSED: the signature does not match"),
            "{said}"
        );
        assert!(said.contains("channel testing"), "{said}");
        UpdateState::record(dir.path(), "stable", &Err(anyhow::anyhow!("no DHT answer")));
        let said = UpdateState::load(dir.path()).unwrap().describe();
        assert!(
            said.starts_with("the channel could not be read: no DHT answer"),
            "{said}"
        );
    }
}
