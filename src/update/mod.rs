//! Updates over Pubky itself. A release is a manifest signed with the release key
//! (`manifest`): what the binary is (target, size, BLAKE3), which versions may upgrade to
//! it, the store format it writes. `pubky-edge release …` (`cli::release`) makes and checks
//! them offline, where the release key is kept; the release key publishes them in its own
//! Pubky storage, and a box finds them there like any client (`check`) and fetches the
//! binary only into a file it keeps when size and hash match (`download`); the server
//! looks daily (`worker`), and what was found is kept for `status` (`state`).

pub mod apply;
pub mod check;
pub mod download;
pub mod launch;
pub mod manifest;
pub mod slots;
pub mod state;
pub mod worker;
