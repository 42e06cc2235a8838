//! A standby box: a second pubky-edge that follows this homeserver's whole log, serves
//! reads of its copy, and can become the homeserver when the first box is gone.
//!
//! The primary's side:
//! - [`pairing`]: one-time pairing codes, the paired standby's replication token, how far
//!   it has followed, and the homeserver key sealed to the standby's own age key when
//!   takeover is allowed.
//! - [`feed`]: what the standby reads: events with their files, blobs, the tables.
//! - [`fence`]: the watch over the homeserver's own record, and standing down.
//!
//! The standby's side:
//! - [`state`]: which primary it follows, its own age key, what it last saw.
//! - [`copy`]: pairing and the first full copy (the server stopped).
//! - [`link`]: the requests to the primary, over PubkyTLS.
//! - [`follow`]: the loop that applies the log as it grows (`crate::store::Replicated`).
//! - [`promote`]: becoming the homeserver.
//!
//! Both: [`wire`] (what they send each other), [`role`] (whether the box takes writes),
//! [`report`] (where the box stands, in words: `status`, the dashboard).
//!
//! **Which box may accept writes.** A box accepts writes as the homeserver only while all
//! of these hold: it holds the homeserver key; it is not following a primary
//! (`standby/follow.json` absent or promoted); it is not fenced (`standby/fenced.json`
//! absent); and, when it has paired a standby that may take over, the newest record of
//! the homeserver key on the DHT is not newer than the last record it signed itself. A
//! promoted standby signs a newer record; the first box, back, sees it before it
//! publishes anything and fences itself: it refuses writes, stops publishing, and writes
//! down the events it accepted that the standby had not read (they stay in its store).

pub mod copy;
pub mod feed;
pub mod fence;
pub mod follow;
pub mod link;
pub mod pairing;
pub mod promote;
pub mod report;
pub mod role;
pub mod state;
pub mod wire;

pub use role::{Mode, Role, DIR};

/// The mode a box starts in, from its data directory's standby files.
pub fn starting_mode(data_dir: &std::path::Path) -> Mode {
    if fence::Fenced::load(data_dir).is_some() {
        Mode::Fenced
    } else if state::Follow::load(data_dir).is_some_and(|f| !f.promoted) {
        Mode::Standby
    } else {
        Mode::Primary
    }
}
