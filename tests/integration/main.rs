//! The in-process and quick real-binary suites, in one test binary (one link, one run):
//! a real server on 127.0.0.1:0 with a temp data directory, the official SDK as a client,
//! the real `pubky-edge` binary for the CLI. The suites that need root, network namespaces,
//! process kills or fixed ports are in `tests/system`.

#[path = "../support/mod.rs"]
mod support;

/// The admin API and the metrics listener.
mod admin;
/// `pubky-edge admin …` against an in-process server.
mod admin_cli;
/// `pubky-edge backup …`: online points in time, restore, damage, the age tool.
mod backup;
/// The real binary: options, `info`, `token new`, `check`, exit codes.
mod cli;
/// What tools of the reference notice: HEADs, stream cache headers, legacy cursors, 405s.
mod compat;
/// Cookie sessions (AuthToken sign-in) and the cookie as a credential.
mod cookie_sessions;
/// The household's dashboard in headless Chromium: claim, invite by QR, people, refusals.
mod dashboard;
/// The pkarr relay, the DHT record and the users' republisher, on a loopback DHT.
mod discovery;
/// The `/events/` feed and the SSE stream.
mod events;
/// What the real binary gives away: logs, error bodies, the data directory's mode.
mod exposure;
/// Grant authentication: signup, sessions, sign-out, grant management, rejections.
mod grant_auth;
/// The accept loop and its limits over real sockets.
mod http_server;
/// Graceful shutdown of `serve`.
mod http_shutdown;
/// WebDAV write locks.
mod locks;
/// `pubky-edge move` between servers on a loopback DHT (and to the reference homeserver).
mod moving;
/// What one stranger can hold (bodies, per-address shares), trusted proxies.
mod open_internet;
/// PubkyTLS with a raw-public-key client.
mod pubky_tls;
/// Request-rate limits and 429s.
mod rate_limits;
/// The official `pubky` SDK end to end, through a loopback DHT.
mod sdk_e2e;
/// Protective limits: oversized heads and bodies, the connection cap, slow clients.
mod server_limits;
/// Board overlays and the systemd notify conversation of the real binary.
mod service;
/// A standby box: pairing, the first copy, following under load, reads, refused writes.
mod standby;
/// The storage API: reads, writes, addressing, listing, quotas, restarts.
mod storage;
/// The relay rung: a box reached only through a relay box, with the SDK.
mod tunnel;
/// Releases signed with the release key, published in its Pubky storage, found by
/// `pubky-edge update check`.
mod updates;
/// Data directories written by earlier releases (tests/fixtures/) open and hold everything.
mod upgrade;
/// The admin's WebDAV with rclone and cadaver.
mod webdav;
/// Users' static websites by `Host`.
mod websites;
