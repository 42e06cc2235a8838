//! What a box is to the homeserver's writes ([`Mode`]), shared by the request handlers and
//! the workers, and where the standby files live.

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
