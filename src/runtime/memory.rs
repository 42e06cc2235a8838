//! The memory ceiling (`limits.memory_budget_mb`). sled keeps bookkeeping for every page of
//! its database in memory, so the server's memory grows with the data and no cache setting
//! bounds it. The ceiling is therefore the kernel's: systemd's `MemoryHigh=` on the
//! service's cgroup (cgroup v2 `memory.high`). Above it the kernel reclaims the service's
//! memory (its page cache, and with swap its cold pages) and slows its allocations: the box
//! gets slower, it is not killed. A `MemoryMax=` would kill, so none is set.
//!
//! `pubky-edge memory-budget --apply` runs as the unit's privileged `ExecStartPre`, reads the
//! same config as the server and sets `MemoryHigh=` on the unit it runs in with
//! `systemctl set-property --runtime` (systemd keeps it across `daemon-reload`). The server
//! logs at start the ceiling it runs under ([`ceiling`]).

use std::path::{Path, PathBuf};

/// The cgroup v2 path of this process (`0::/system.slice/pubky-edge.service` →
/// `/system.slice/pubky-edge.service`), from the text of `/proc/self/cgroup`.
pub fn parse_cgroup_v2(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
        .filter(|p| p.starts_with('/'))
}

/// The systemd service whose cgroup `path` is (its last component, when it names a
/// `.service`).
pub fn service_unit(path: &str) -> Option<&str> {
    let last = path.rsplit('/').next()?;
    (last.len() > ".service".len() && last.ends_with(".service")).then_some(last)
}

/// The value of a cgroup v2 `memory.high` file: `max` is no ceiling.
pub fn parse_memory_high(s: &str) -> Option<u64> {
    match s.trim() {
        "max" => None,
        n => n.parse().ok(),
    }
}

/// Whole MiB, as the budget is configured and reported.
fn mib(bytes: u64) -> u64 {
    bytes / (1 << 20)
}

/// This process's cgroup v2 path, if it is on a cgroup v2 hierarchy.
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    parse_cgroup_v2(&text).map(str::to_string)
}

/// The `memory.high` file of cgroup `path` (present when the memory controller is on).
fn memory_high_file(path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("memory.high")
}

/// The ceiling the kernel holds this process to, as the server reports it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ceiling {
    /// `memory.high` of its cgroup (the path), in bytes.
    High { cgroup: String, bytes: u64 },
    /// On cgroup v2, with no `memory.high` set.
    None { cgroup: String },
    /// Not on cgroup v2, or no memory controller for its cgroup: nothing can be read.
    Unknown,
}

/// The ceiling in force for this process now.
pub fn ceiling() -> Ceiling {
    let Some(cgroup) = own_cgroup() else {
        return Ceiling::Unknown;
    };
    match std::fs::read_to_string(memory_high_file(&cgroup)) {
        Err(_) => Ceiling::Unknown,
        Ok(text) => match parse_memory_high(&text) {
            Some(bytes) => Ceiling::High { cgroup, bytes },
            None => Ceiling::None { cgroup },
        },
    }
}

/// Logs the ceiling in force against the configured budget; warns when this runs as a
/// systemd service with no ceiling while a budget is configured (the unit's
/// `ExecStartPre` did not apply it).
pub fn log_at_start(budget: Option<u64>) {
    let budget_mib = budget.map(mib);
    match ceiling() {
        Ceiling::High { cgroup, bytes } if Some(bytes) == budget => {
            tracing::info!(
                cgroup,
                mib = mib(bytes),
                "memory ceiling (limits.memory_budget_mb)"
            )
        }
        Ceiling::High { cgroup, bytes } => tracing::info!(
            cgroup,
            mib = mib(bytes),
            budget_mib,
            "memory ceiling (not limits.memory_budget_mb: set outside this config)"
        ),
        Ceiling::None { cgroup } if budget.is_some() && service_unit(&cgroup).is_some() => {
            tracing::warn!(
                cgroup,
                budget_mib,
                "no memory ceiling: limits.memory_budget_mb is not applied to this service \
                 (see `pubky-edge memory-budget --apply`)"
            )
        }
        c => tracing::info!(budget_mib, ceiling = ?c, "no memory ceiling on this process"),
    }
}

/// The active swap devices and their sizes in KiB, from the text of `/proc/swaps`.
pub fn parse_swaps(s: &str) -> Vec<(String, u64)> {
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect()
}

/// The command line's `memory-budget [--apply]`: prints the budget, the ceiling in force
/// and the swap behind it; `--apply` sets the budget as `MemoryHigh=` on the systemd service
/// this runs in (as its `ExecStartPre=+`).
pub fn command(budget: Option<u64>, args: &[&str]) -> anyhow::Result<()> {
    let apply = match args {
        [] => false,
        ["--apply"] => true,
        _ => anyhow::bail!("usage: pubky-edge memory-budget [--apply]"),
    };
    match budget {
        Some(b) => println!("memory budget: {} MiB (limits.memory_budget_mb)", mib(b)),
        None => println!("memory budget: none (limits.memory_budget_mb = 0)"),
    }
    let swaps = std::fs::read_to_string("/proc/swaps")
        .map(|s| parse_swaps(&s))
        .unwrap_or_default();
    if swaps.is_empty() {
        println!(
            "swap: none; above the budget the kernel can only slow the server down, a \
             compressed swap (zram) lets it page cold memory out instead"
        );
    }
    for (dev, kib) in &swaps {
        println!("swap: {dev} {} MiB", kib / 1024);
    }
    if apply {
        let cgroup = own_cgroup()
            .ok_or_else(|| anyhow::anyhow!("not on a cgroup v2 hierarchy: nothing to apply"))?;
        let unit = service_unit(&cgroup).ok_or_else(|| {
            anyhow::anyhow!("not running in a systemd service (cgroup {cgroup}): nothing to apply")
        })?;
        // "infinity" takes back a ceiling an earlier config had set.
        let value = budget.map_or("infinity".to_string(), |b| b.to_string());
        let out = std::process::Command::new("systemctl")
            .args(["set-property", "--runtime", unit])
            .arg(format!("MemoryHigh={value}"))
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "systemctl set-property {unit} MemoryHigh={value}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        println!("applied: MemoryHigh={value} on {unit}");
    }
    match ceiling() {
        Ceiling::High { cgroup, bytes } => {
            println!(
                "ceiling in force: {} MiB (memory.high of {cgroup})",
                mib(bytes)
            )
        }
        Ceiling::None { cgroup } => println!("ceiling in force: none (memory.high of {cgroup})"),
        Ceiling::Unknown => println!("ceiling in force: unknown (no cgroup v2 memory controller)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_path_of_a_service() {
        let text = "0::/system.slice/pubky-edge.service\n";
        let path = parse_cgroup_v2(text).unwrap();
        assert_eq!(path, "/system.slice/pubky-edge.service");
        assert_eq!(service_unit(path), Some("pubky-edge.service"));
        // A v1 hierarchy only: no v2 path.
        assert_eq!(parse_cgroup_v2("4:memory:/process_api/x\n1:cpu:/\n"), None);
        // A hybrid one: the v2 line is found among the v1 lines.
        assert_eq!(
            parse_cgroup_v2("4:memory:/a\n0::/user.slice\n"),
            Some("/user.slice")
        );
        assert_eq!(
            service_unit("/user.slice/user-1000.slice/session-2.scope"),
            None
        );
        assert_eq!(service_unit("/"), None);
        assert_eq!(service_unit("/system.slice/.service"), None);
    }

    #[test]
    fn memory_high_values() {
        assert_eq!(parse_memory_high("max\n"), None);
        assert_eq!(parse_memory_high("167772160\n"), Some(160 << 20));
        assert_eq!(parse_memory_high("garbage"), None);
    }

    #[test]
    fn swaps_table() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/zram0                              partition\t1048572\t\t0\t\t100\n";
        assert_eq!(parse_swaps(text), vec![("/dev/zram0".to_string(), 1048572)]);
        assert!(parse_swaps("Filename Type Size Used Priority\n").is_empty());
    }
}
