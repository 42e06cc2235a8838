//! Two binary slots in `<data>/slots/` (`a/` and `b/`, each a `pubky-edge` and the
//! `release.json` it was installed from) and the switch between them.
//!
//! - `current` is a symlink to the slot that last proved healthy. It only ever changes by
//!   an atomic rename, so a power cut leaves either the old pointer or the new one.
//! - An update is installed into the other slot and `trial.json` names it: the next start
//!   tries it once.
//! - Every start goes through the installed binary (`/usr/bin/pubky-edge` on a box), which
//!   [`launch`](Slots::launch)es: it `exec`s the trial the first time, the `current` slot
//!   when that is newer than itself, or stays.
//! - The trial reports healthy within `update.health_deadline_ms` (store open, listeners
//!   up, its own listener answering a request) and [`commit`](Slots::commit)s: `current`
//!   moves to it. A trial that exits, crashes, hangs past the deadline or is killed starts
//!   again through the launcher, which finds the trial already tried: it is rolled back
//!   (nothing to move: `current` never left the previous slot), and its version is listed
//!   as failed and never installed again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, Version};
use crate::backup::{sync_parent, write_private};

/// Under the data directory.
pub const DIR: &str = "slots";
/// Set for a binary started from a slot: the slot's name.
pub const SLOT_ENV: &str = "PUBKY_EDGE_SLOT";

const CURRENT: &str = "current";
const TRIAL: &str = "trial.json";
const HISTORY: &str = "history.json";
const HOLD: &str = "hold.json";
const STARTS: &str = "starts.json";
/// Starts of the `current` slot in a row that never reached ready, before the installed
/// binary runs instead.
pub const MAX_UNREADY_STARTS: u32 = 3;
const BINARY: &str = "pubky-edge";
const RELEASE: &str = "release.json";
const NAMES: [&str; 2] = ["a", "b"];

/// An installed update waiting for, or in, its first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub version: String,
    pub slot: String,
    /// The version it replaces.
    pub from: String,
    /// Starts made: 0 until the launcher hands over to it, then 1.
    pub attempts: u32,
    pub installed_secs: u64,
    /// The backup set holding the point made just before, for a release that changes the
    /// store's format.
    #[serde(default)]
    pub backup_point: Option<PathBuf>,
}

/// What happened to the last update, and the versions never to try again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub last: Option<Outcome>,
    #[serde(default)]
    pub failed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub from: String,
    pub to: String,
    /// "updated", "rolled_back", "fell_back" or "switched_by_hand".
    pub result: String,
    pub detail: Option<String>,
    pub at_secs: u64,
}

impl Outcome {
    pub fn describe(&self) -> String {
        let when = crate::clock::rfc3339(self.at_secs);
        let detail = self.detail.as_deref().unwrap_or("");
        match self.result.as_str() {
            "updated" => format!("{} → {} at {when}, healthy", self.from, self.to),
            "rolled_back" => format!(
                "{} → {} ROLLED BACK at {when}: {detail}; {} is not tried again",
                self.from, self.to, self.to
            ),
            "fell_back" => format!(
                "{} FAILED TO START at {when}: {detail}; {} runs (`pubky-edge update rollback` \
                 or a new update clears this)",
                self.from, self.to
            ),
            _ => format!("{} → {} by hand at {when}", self.from, self.to),
        }
    }
}

/// Automatic updates held by the household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub since_secs: u64,
    pub reason: String,
}

/// Starts of the current slot that have not reached ready yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Starts {
    slot: String,
    unready: u32,
    /// The launcher gave up on the slot: the installed binary runs.
    #[serde(default)]
    fell_back: bool,
}

/// What a start should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// Run this binary: no slot is newer.
    Stay,
    /// Hand over to the slot's binary.
    Exec { slot: String, binary: PathBuf },
}

pub struct Slots {
    dir: PathBuf,
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn save<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    // Invariant: these structs of strings and numbers always serialize.
    let text = serde_json::to_vec_pretty(value).expect("slot state serializes");
    write_private(path, &text)
}

fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

impl Slots {
    pub fn at(data_dir: &Path) -> Slots {
        Slots {
            dir: data_dir.join(DIR),
        }
    }

    /// The slot `current` points at, when it names one.
    pub fn current(&self) -> Option<String> {
        let target = fs::read_link(self.dir.join(CURRENT)).ok()?;
        let name = target.to_str()?;
        NAMES.contains(&name).then(|| name.to_string())
    }

    /// The release a slot was installed from.
    pub fn release(&self, slot: &str) -> Option<Manifest> {
        load(&self.dir.join(slot).join(RELEASE))
    }

    pub fn trial(&self) -> Option<Trial> {
        load(&self.dir.join(TRIAL))
    }

    pub fn history(&self) -> History {
        load(&self.dir.join(HISTORY)).unwrap_or_default()
    }

    pub fn hold(&self) -> Option<Hold> {
        load(&self.dir.join(HOLD))
    }

    pub fn set_hold(&self, hold: Option<&Hold>) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        match hold {
            Some(h) => save(&self.dir.join(HOLD), h),
            None => remove_durably(&self.dir.join(HOLD)),
        }
    }

    /// Whether `version` failed on this box before.
    pub fn failed(&self, version: &str) -> bool {
        self.history().failed.iter().any(|v| v == version)
    }

    /// The slot the box runs from: this process's when it was started from one
    /// (`PUBKY_EDGE_SLOT`), else the slot the server hands over to (for a command run
    /// beside it); none when the installed binary runs.
    pub fn running_slot(&self) -> Option<String> {
        std::env::var(SLOT_ENV)
            .ok()
            .or_else(|| self.serving_slot(super::manifest::RUNNING))
    }

    /// The version the box runs: the release of [`running_slot`](Self::running_slot).
    pub fn running(&self) -> String {
        self.version_of(self.running_slot().as_deref())
    }

    /// The version `slot` holds, by its release; the version this binary was built as
    /// without one.
    pub fn version_of(&self, slot: Option<&str>) -> String {
        slot.and_then(|s| self.release(s))
            .map_or_else(|| super::manifest::RUNNING.to_string(), |m| m.version)
    }

    /// The version a slot holds, by its release.
    pub fn running_in(&self, slot: &str) -> String {
        self.release(slot).map_or_else(|| "?".into(), |m| m.version)
    }

    /// Whether this process is the trial: started from the slot the trial names.
    pub fn is_trial(&self) -> Option<Trial> {
        let slot = std::env::var(SLOT_ENV).ok()?;
        self.trial()
            .filter(|t| t.slot == slot && t.attempts > 0 && self.current() != Some(slot))
    }

    /// Installs `m`'s verified binary (`binary`, checked again here) into the slot that is
    /// not `current`, and names it the trial for the next start. `from` is the running
    /// version.
    pub fn install(
        &self,
        m: &Manifest,
        binary: &Path,
        from: &str,
        backup_point: Option<&Path>,
    ) -> Result<Trial> {
        if let Some(t) = self.trial() {
            bail!(
                "an update to {} is already installed and waits for the server's next start",
                t.version
            );
        }
        if self.failed(&m.version) {
            bail!(
                "{} failed its health check on this box before; it is not tried again",
                m.version
            );
        }
        let slot = match self.current().as_deref() {
            Some("a") => "b",
            _ => "a",
        };
        let dir = self.dir.join(slot);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The slot's previous release goes first: a half-written slot is never mistaken
        // for the release it held.
        remove_durably(&dir.join(RELEASE))?;
        let part = dir.join("pubky-edge.part");
        let mut input =
            fs::File::open(binary).with_context(|| format!("opening {}", binary.display()))?;
        let mut out = fs::File::create(&part)?;
        let (size, hash) = crate::backup::point::copy_hashed(&mut input, &mut out)?;
        if let Err(e) = m.check_hashed(size, &hash) {
            let _ = fs::remove_file(&part);
            bail!("{e}");
        }
        out.sync_all()?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&part, fs::Permissions::from_mode(0o755))?;
        fs::rename(&part, dir.join(BINARY))?;
        sync_parent(&part)?;
        save(&dir.join(RELEASE), m)?;
        let trial = Trial {
            version: m.version.clone(),
            slot: slot.into(),
            from: from.into(),
            attempts: 0,
            installed_secs: crate::clock::now_secs(),
            backup_point: backup_point.map(Path::to_path_buf),
        };
        save(&self.dir.join(TRIAL), &trial)?;
        Ok(trial)
    }

    /// What this start runs, given the installed binary's own version `own`. A trial that
    /// was already started once and did not commit is rolled back here.
    pub fn launch(&self, own: &str) -> Result<Launch> {
        if let Some(mut t) = self.trial() {
            if self.current().as_deref() == Some(t.slot.as_str()) {
                // Committed, then cut off before the trial file went.
                remove_durably(&self.dir.join(TRIAL))?;
            } else if t.attempts == 0 {
                t.attempts = 1;
                save(&self.dir.join(TRIAL), &t)?;
                return Ok(Launch::Exec {
                    binary: self.dir.join(&t.slot).join(BINARY),
                    slot: t.slot,
                });
            } else {
                self.roll_back(
                    &t,
                    "it did not report healthy (it exited, crashed, hung past the deadline or was stopped first)",
                )?;
            }
        }
        let Some(slot) = self.newer_slot(own) else {
            return Ok(Launch::Stay);
        };
        let binary = self.dir.join(&slot).join(BINARY);
        // A binary the card has damaged since it proved healthy would fail every start: the
        // installed one runs instead.
        if let Err(e) = self.check_slot(&slot, &binary) {
            tracing::error!(
                slot,
                "the slot's binary is damaged, running the installed one: {e:#}"
            );
            return Ok(Launch::Stay);
        }
        // So would one that stopped starting for another reason (a kernel or library it
        // meets only now): after a few starts in a row that never reached ready.
        let path = self.dir.join(STARTS);
        let mut starts: Starts = load(&path).unwrap_or_default();
        if starts.slot != slot {
            starts = Starts {
                slot: slot.clone(),
                ..Starts::default()
            };
        }
        if starts.unready >= MAX_UNREADY_STARTS {
            if !starts.fell_back {
                starts.fell_back = true;
                save(&path, &starts)?;
                let why = format!(
                    "slot {slot} did not get ready in {} starts in a row",
                    starts.unready
                );
                let to = format!("{own} (the installed binary)");
                self.record(&self.running_in(&slot), &to, "fell_back", Some(why))?;
            }
            tracing::error!(
                slot,
                "the slot's binary does not start; running the installed one"
            );
            return Ok(Launch::Stay);
        }
        starts.unready += 1;
        save(&path, &starts)?;
        Ok(Launch::Exec { binary, slot })
    }

    /// The slot the server runs from: [`newer_slot`](Self::newer_slot), unless it stopped
    /// starting and the installed binary runs instead.
    pub fn serving_slot(&self, own: &str) -> Option<String> {
        let slot = self.newer_slot(own)?;
        let starts: Starts = load(&self.dir.join(STARTS)).unwrap_or_default();
        (!(starts.slot == slot && starts.fell_back)).then_some(slot)
    }

    /// This process, started from a slot, is ready: its starts are no longer counted.
    pub fn started_ok(&self) -> Result<()> {
        remove_durably(&self.dir.join(STARTS))
    }

    /// Whether a slot's binary is still its release's (size and BLAKE3).
    fn check_slot(&self, slot: &str, binary: &Path) -> Result<()> {
        let m = self
            .release(slot)
            .ok_or_else(|| anyhow!("slot {slot} has no release.json"))?;
        let mut f = fs::File::open(binary).with_context(|| format!("{}", binary.display()))?;
        let (size, hash) = crate::backup::point::copy_hashed(&mut f, &mut io::sink())?;
        m.check_hashed(size, &hash).map_err(|e| anyhow!("{e}"))
    }

    /// The `current` slot, when its release is newer than the installed binary's `own`
    /// version (else the installed binary runs: a package upgrade overtook the slots).
    pub fn newer_slot(&self, own: &str) -> Option<String> {
        let slot = self.current()?;
        let m = self.release(&slot)?;
        let newer = Version::parse(&m.version)? > Version::parse(own)?;
        newer.then_some(slot)
    }

    /// The trial could not be started at all (`exec` failed): rolled back at once.
    pub fn exec_failed(&self, slot: &str, e: &io::Error) -> Result<()> {
        match self.trial().filter(|t| t.slot == slot) {
            Some(t) => self.roll_back(&t, &format!("it could not be started: {e}")),
            None => Ok(()),
        }
    }

    fn roll_back(&self, t: &Trial, why: &str) -> Result<()> {
        let why = match &t.backup_point {
            Some(set) => format!(
                "{why}. It may have moved the store to a newer format: if {} refuses the store, \
                 restore the point made before the update (`pubky-edge backup restore {} --force`)",
                t.from,
                set.display()
            ),
            None => why.to_string(),
        };
        let why = why.as_str();
        tracing::error!(
            from = t.from,
            to = t.version,
            slot = t.slot,
            "the update was rolled back: {why}"
        );
        self.record(&t.from, &t.version, "rolled_back", Some(why.into()))?;
        remove_durably(&self.dir.join(TRIAL))
    }

    /// Keeps `from → to` as the last update's outcome (a rolled-back version also among
    /// those never tried again).
    fn record(&self, from: &str, to: &str, result: &str, detail: Option<String>) -> Result<()> {
        let mut h = self.history();
        if result == "rolled_back" && !h.failed.iter().any(|v| v == to) {
            h.failed.push(to.into());
        }
        h.last = Some(Outcome {
            from: from.into(),
            to: to.into(),
            result: result.into(),
            detail,
            at_secs: crate::clock::now_secs(),
        });
        save(&self.dir.join(HISTORY), &h)
    }

    /// Points `current` at `slot` by an atomic rename of a new symlink.
    fn point_at(&self, slot: &str) -> Result<()> {
        let next = self.dir.join("current.new");
        let _ = fs::remove_file(&next);
        std::os::unix::fs::symlink(slot, &next)?;
        fs::rename(&next, self.dir.join(CURRENT))?;
        sync_parent(&next)
    }

    /// The trial reported healthy: `current` moves to it.
    pub fn commit(&self, t: &Trial) -> Result<()> {
        remove_durably(&self.dir.join(STARTS))?;
        self.point_at(&t.slot)?;
        self.record(&t.from, &t.version, "updated", None)?;
        remove_durably(&self.dir.join(TRIAL))
    }

    /// Back by hand to the other slot's release, or to the installed binary (`own`) when
    /// the other slot holds none; returns what runs after the next start.
    pub fn roll_back_by_hand(&self, own: &str) -> Result<String> {
        if let Some(t) = self.trial() {
            remove_durably(&self.dir.join(TRIAL))?;
            return Ok(format!(
                "the waiting update to {} is cancelled; nothing else changes",
                t.version
            ));
        }
        let Some(current) = self.current() else {
            bail!("no update was made: the box runs its installed binary ({own})");
        };
        let from = self
            .release(&current)
            .map_or_else(|| "?".into(), |m| m.version);
        let other = NAMES
            .iter()
            .find(|n| **n != current)
            .copied()
            .unwrap_or("a");
        let to = match self.release(other) {
            Some(m) if !self.failed(&m.version) && self.dir.join(other).join(BINARY).is_file() => {
                self.point_at(other)?;
                m.version
            }
            _ => {
                remove_durably(&self.dir.join(CURRENT))?;
                format!("{own} (the installed binary)")
            }
        };
        remove_durably(&self.dir.join(STARTS))?;
        self.record(&from, &to, "switched_by_hand", None)?;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, binary: &[u8]) -> Manifest {
        Manifest {
            version: version.into(),
            target: "aarch64-unknown-linux-musl".into(),
            size: binary.len() as u64,
            blake3: blake3::hash(binary).to_hex().to_string(),
            min_from: "0.0.1".into(),
            store_format: 1,
            notes: String::new(),
            released_at: 0,
        }
    }

    fn staged(dir: &Path, bytes: &[u8]) -> PathBuf {
        let p = dir.join(format!("staged-{}", bytes.len()));
        fs::write(&p, bytes).unwrap();
        p
    }

    /// Slots in a fresh directory with 0.2.0 installed as the trial, over 0.1.0.
    fn trial_of_0_2_0() -> (tempfile::TempDir, Slots) {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::at(dir.path());
        let m = release("0.2.0", b"two");
        slots
            .install(&m, &staged(dir.path(), b"two"), "0.1.0", None)
            .unwrap();
        (dir, slots)
    }

    #[test]
    fn a_trial_is_started_once_committed_when_healthy_and_rolled_back_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::at(dir.path());
        // Each start here gets ready.
        let start = |own: &str| {
            let l = slots.launch(own).unwrap();
            slots.started_ok().unwrap();
            l
        };
        assert_eq!(slots.launch("0.1.0").unwrap(), Launch::Stay);

        // 0.2.0 installs into slot a and is tried once.
        let m2 = release("0.2.0", b"two");
        let t = slots
            .install(&m2, &staged(dir.path(), b"two"), "0.1.0", None)
            .unwrap();
        assert_eq!((t.slot.as_str(), t.attempts), ("a", 0));
        let again = slots.install(&m2, &staged(dir.path(), b"two"), "0.1.0", None);
        assert!(again.unwrap_err().to_string().contains("already installed"));
        let a = dir.path().join("slots/a/pubky-edge");
        assert_eq!(
            slots.launch("0.1.0").unwrap(),
            Launch::Exec {
                slot: "a".into(),
                binary: a.clone()
            }
        );
        assert_eq!(fs::read(&a).unwrap(), b"two");
        // Healthy: current moves to a, and every later start hands over to it.
        slots.commit(&slots.trial().unwrap()).unwrap();
        assert_eq!(slots.current().as_deref(), Some("a"));
        assert_eq!(slots.trial(), None);
        assert_eq!(
            slots
                .history()
                .last
                .unwrap()
                .describe()
                .split(" at ")
                .next(),
            Some("0.1.0 → 0.2.0")
        );
        let exec_a = Launch::Exec {
            slot: "a".into(),
            binary: a.clone(),
        };
        assert_eq!(start("0.1.0"), exec_a);
        // An installed binary newer than the slot (a package upgrade) runs itself.
        assert_eq!(slots.launch("0.2.0").unwrap(), Launch::Stay);
        // A slot binary damaged on the card is not started: the installed binary runs.
        fs::write(&a, b"twO").unwrap();
        assert_eq!(slots.launch("0.1.0").unwrap(), Launch::Stay);
        fs::write(&a, b"two").unwrap();
        assert_eq!(start("0.1.0"), exec_a);

        // 0.3.0 goes to slot b; its first start hands over, its second finds it untried
        // to the end: rolled back to a, and 0.3.0 is refused from then on.
        let m3 = release("0.3.0", b"three");
        let t = slots
            .install(&m3, &staged(dir.path(), b"three"), "0.2.0", None)
            .unwrap();
        assert_eq!(t.slot, "b");
        assert!(matches!(slots.launch("0.1.0").unwrap(), Launch::Exec { slot, .. } if slot == "b"));
        assert_eq!(start("0.1.0"), exec_a);
        assert_eq!(slots.current().as_deref(), Some("a"));
        let h = slots.history();
        assert_eq!(h.failed, vec!["0.3.0".to_string()]);
        assert!(
            h.last.unwrap().describe().contains("ROLLED BACK"),
            "{:?}",
            slots.history()
        );
        let retry = slots.install(&m3, &staged(dir.path(), b"three"), "0.2.0", None);
        assert!(retry.unwrap_err().to_string().contains("not tried again"));

        // A release in a newer store format, rolled back: the reason names the point to
        // restore if the previous version refuses the store.
        let m5 = release("0.5.0", b"five");
        let point = dir.path().join("update/before-0.5.0");
        slots
            .install(&m5, &staged(dir.path(), b"five"), "0.2.0", Some(&point))
            .unwrap();
        slots.launch("0.1.0").unwrap();
        assert_eq!(start("0.1.0"), exec_a);
        let said = slots.history().last.unwrap().describe();
        assert!(
            said.contains(&format!("backup restore {} --force", point.display())),
            "{said}"
        );

        // A binary that is not the release's is refused before it is a trial.
        let m4 = release("0.4.0", b"four");
        let wrong = slots.install(&m4, &staged(dir.path(), b"fuor"), "0.2.0", None);
        assert!(wrong.unwrap_err().to_string().contains("BLAKE3"));
        assert!(!dir.path().join("slots/b/pubky-edge.part").exists());
        assert_eq!(slots.trial(), None);
    }

    #[test]
    fn a_current_slot_that_stops_starting_gives_way_to_the_installed_binary() {
        let (dir, slots) = trial_of_0_2_0();
        slots.launch("0.1.0").unwrap();
        slots.commit(&slots.trial().unwrap()).unwrap();
        let exec_a = Launch::Exec {
            slot: "a".into(),
            binary: dir.path().join("slots/a/pubky-edge"),
        };
        // Starts that get ready are not counted, however many.
        for _ in 0..2 * MAX_UNREADY_STARTS {
            assert_eq!(slots.launch("0.1.0").unwrap(), exec_a);
            slots.started_ok().unwrap();
        }
        // Starts in a row that never get ready: then the installed binary.
        for _ in 0..MAX_UNREADY_STARTS {
            assert_eq!(slots.launch("0.1.0").unwrap(), exec_a);
        }
        assert_eq!(slots.serving_slot("0.1.0"), Some("a".into()));
        assert_eq!(slots.launch("0.1.0").unwrap(), Launch::Stay);
        assert_eq!(slots.launch("0.1.0").unwrap(), Launch::Stay);
        assert_eq!(slots.serving_slot("0.1.0"), None);
        assert_eq!(slots.running(), super::super::manifest::RUNNING);
        let said = slots.history().last.unwrap().describe();
        assert!(said.starts_with("0.2.0 FAILED TO START at "), "{said}");
        assert!(
            said.contains("did not get ready in 3 starts in a row"),
            "{said}"
        );
        // The household switches back by hand: the count is cleared with it.
        assert_eq!(
            slots.roll_back_by_hand("0.1.0").unwrap(),
            "0.1.0 (the installed binary)"
        );
        assert_eq!(slots.launch("0.1.0").unwrap(), Launch::Stay);
        assert!(!dir.path().join("slots/starts.json").exists());
    }

    #[test]
    fn a_trial_that_cannot_start_is_rolled_back_and_a_commit_cut_short_is_kept() {
        let (dir, slots) = trial_of_0_2_0();
        let Launch::Exec { slot, binary } = slots.launch("0.1.0").unwrap() else {
            panic!("no hand-over")
        };
        // A slot binary that cannot be executed (here: its mode taken away).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o644)).unwrap();
        let e = crate::update::launch::exec(&slot, &binary);
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        slots.exec_failed(&slot, &e).unwrap();
        assert_eq!(slots.trial(), None);
        assert_eq!(slots.launch("0.1.0").unwrap(), Launch::Stay);
        assert!(slots.failed("0.2.0"));

        // The pointer moved and the power went before trial.json did: it stays committed.
        let m = release("0.2.1", b"two one");
        let t = slots
            .install(&m, &staged(dir.path(), b"two one"), "0.1.0", None)
            .unwrap();
        slots.launch("0.1.0").unwrap();
        slots.point_at(&t.slot).unwrap();
        assert!(
            matches!(slots.launch("0.1.0").unwrap(), Launch::Exec { slot, .. } if slot == t.slot)
        );
        assert_eq!(slots.trial(), None);
        assert!(!slots.failed("0.2.1"));

        // By hand: the other slot holds nothing, so back to the installed binary.
        let said = slots.roll_back_by_hand("0.1.0").unwrap();
        assert_eq!(said, "0.1.0 (the installed binary)");
        assert_eq!(slots.current(), None);
        assert_eq!(slots.launch("0.1.0").unwrap(), Launch::Stay);
        let err = slots.roll_back_by_hand("0.1.0").unwrap_err().to_string();
        assert!(err.contains("no update was made"), "{err}");
    }
}
