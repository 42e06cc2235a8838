//! The suites that need the machine to themselves or more than a loopback socket: network
//! namespaces and root (household, disk full), process kills and wall-clock bounds (crash,
//! hostile load), and the fixed loopback ports of `pubky-edge testnet`. One test binary; CI
//! runs the household suite first through `.ci/household` (`cargo test --test system household`).

#[path = "../support/mod.rs"]
mod support;

use std::sync::{Condvar, Mutex};

/// Which suite has the machine, and how many of its tests are running.
static MACHINE: Mutex<Option<(&'static str, usize)>> = Mutex::new(None);
static MACHINE_FREED: Condvar = Condvar::new();

/// Held by every test of a suite here: tests of one suite run side by side (as they did in
/// a binary of their own), but never beside another suite's, so a crash loop's load cannot
/// stretch a hostile-load test's wall-clock bound.
pub struct Suite(&'static str);

pub fn suite(name: &'static str) -> Suite {
    let mut m = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match *m {
            None => *m = Some((name, 1)),
            Some((s, ref mut n)) if s == name => *n += 1,
            Some(_) => {
                m = MACHINE_FREED.wait(m).unwrap_or_else(|e| e.into_inner());
                continue;
            }
        }
        return Suite(name);
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let mut m = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, n)) = m.as_mut() {
            debug_assert_eq!(*s, self.0);
            *n -= 1;
            if *n == 0 {
                *m = None;
                MACHINE_FREED.notify_all();
            }
        }
    }
}

/// One address runs every attack at once on the pi-zero limits; a normal client is served.
mod attack;
/// The nightly backup's USB disk: a labelled filesystem on a loop device (root).
mod backup_disk;
/// The OCI image under podman, with the SDK (when `PUBKY_EDGE_IMAGE` is set).
mod container;
/// SIGKILL under concurrent writes; every acknowledged write survives.
mod crash;
/// A full data filesystem (a tmpfs the test mounts; root).
mod disk_full;
/// A normal client stays served under idle, slow and flooding connections.
mod hostile;
/// UPnP and mDNS against real peers in network namespaces (root).
mod household;
/// A standby box as processes: SIGKILLs mid-replication, takeover with the SDK, the return.
mod standby;
/// `pubky-edge testnet` on its fixed ports with the SDK's `testnet()` preset.
mod testnet_cli;
