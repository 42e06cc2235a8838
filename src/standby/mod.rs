//! A standby box: a second pubky-edge that follows this homeserver's whole log, serves
//! reads of its copy, and can become the homeserver when the first box is gone.
//!
//! - [`pairing`] (the primary's side): one-time pairing codes, the paired standby's
//!   replication token, how far it has followed, and the homeserver key sealed to the
//!   standby's own age key when takeover is allowed.
//! - [`feed`] (the primary's side): what the standby reads: events with their files,
//!   blobs, the tables, the first full copy.
//! - [`follow`] (the standby's side): pairing, the first copy, and the loop that applies
//!   the log as it grows (`crate::store::Replicated`).
//! - [`fence`]: promotion, and the rule that keeps two boxes from taking writes.
//! - [`report`]: where the box stands, in words (`status`, the dashboard).
//!
//! **Which box may accept writes.** A box accepts writes as the homeserver only while all
//! of these hold: it holds the homeserver key; it is not following a primary
//! (`standby/follow.json` absent or promoted); it is not fenced (`standby/fenced.json`
//! absent); and, when it has paired a standby that may take over, the newest record of
//! the homeserver key on the DHT is not newer than the last record it signed itself. A
//! promoted standby signs a newer record; the first box, back, sees it before it
//! publishes anything and fences itself: it refuses writes, stops publishing, and writes
//! down the events it accepted that the standby had not read (they stay in its store).

pub mod feed;
pub mod fence;
pub mod follow;
pub mod pairing;
pub mod report;
pub mod wire;

use std::sync::atomic::{AtomicU8, Ordering};

/// Where the standby files live in the data directory.
pub const DIR: &str = "standby";

/// What this box is to the homeserver's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepts writes.
    Primary,
    /// Follows a primary; serves reads, refuses writes.
    Standby,
    /// Another box took over; refuses writes.
    Fenced,
}

/// The box's [`Mode`], shared by the request handlers and the workers.
#[derive(Debug)]
pub struct Role(AtomicU8);

impl Role {
    pub fn new(mode: Mode) -> Role {
        Role(AtomicU8::new(mode as u8))
    }

    pub fn get(&self) -> Mode {
        match self.0.load(Ordering::SeqCst) {
            0 => Mode::Primary,
            1 => Mode::Standby,
            _ => Mode::Fenced,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.0.store(mode as u8, Ordering::SeqCst);
    }

    /// Why a write is refused, when it is.
    pub fn refusal(&self) -> Option<&'static str> {
        match self.get() {
            Mode::Primary => None,
            Mode::Standby => {
                Some("This box is a standby: it serves reads of its copy; write to the primary")
            }
            Mode::Fenced => Some(
                "This box stopped accepting writes: another box took over as this \
                 homeserver (see `pubky-edge standby status`)",
            ),
        }
    }
}

/// The mode a box starts in, from its data directory's standby files.
pub fn starting_mode(data_dir: &std::path::Path) -> Mode {
    if fence::Fenced::load(data_dir).is_some() {
        Mode::Fenced
    } else if follow::Follow::load(data_dir).is_some_and(|f| !f.promoted) {
        Mode::Standby
    } else {
        Mode::Primary
    }
}
