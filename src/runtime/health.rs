//! How the board is doing, for the dashboard: CPU temperature and the Raspberry Pi
//! firmware's throttling flags where the board exposes them, memory and load from
//! sysinfo(2) (the service's /proc shows only its own process), and how much has been
//! written to the data disk since boot (from the block device's `stat` in /sys). Every
//! reading is optional: a board or a container without it shows "not available".

use std::path::Path;

/// The firmware's flags, as `vcgencmd get_throttled` prints them.
pub const THROTTLED_NODE: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";

#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Degrees Celsius of the CPU's thermal zone.
    pub temp_c: Option<f64>,
    pub throttled: Option<Throttled>,
    pub mem_total: u64,
    pub mem_available: u64,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    pub cpus: usize,
    pub system_uptime_secs: u64,
    /// Bytes written to the data directory's block device since boot, and its name.
    pub disk_written: Option<(String, u64)>,
}

/// The Raspberry Pi firmware's throttling word: what is happening now, and what has
/// happened since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled(pub u32);

impl Throttled {
    /// Problems happening now and since boot, in words.
    pub fn describe(self) -> (Vec<&'static str>, Vec<&'static str>) {
        const WHAT: [&str; 4] = [
            "under-voltage (use a better power supply)",
            "CPU frequency capped",
            "throttled",
            "soft temperature limit reached",
        ];
        let now = (0..4).filter(|b| self.0 & (1 << b) != 0).map(|b| WHAT[b]);
        let since = (0..4)
            .filter(|b| self.0 & (1 << (16 + b)) != 0)
            .map(|b| WHAT[b]);
        (now.collect(), since.collect())
    }
}

/// Reads everything (blocking, a few small files; call off the executor).
pub fn read(data_dir: &Path) -> Health {
    let info = rustix::system::sysinfo();
    let unit = u64::from(info.mem_unit.max(1));
    let load = info.loads.map(|l| l as f64 / 65536.0);
    Health {
        temp_c: cpu_temperature(Path::new("/sys/class/thermal")),
        throttled: std::fs::read_to_string(THROTTLED_NODE)
            .ok()
            .and_then(|s| parse_throttled(&s)),
        mem_total: (info.totalram as u64).saturating_mul(unit),
        mem_available: (info.freeram as u64)
            .saturating_add(info.bufferram as u64)
            .saturating_mul(unit),
        load,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        system_uptime_secs: info.uptime.max(0) as u64,
        disk_written: disk_written(data_dir),
    }
}

/// `0x50005`, `50005` or `0` (the node prints hex; `vcgencmd` adds `throttled=0x`).
pub fn parse_throttled(s: &str) -> Option<Throttled> {
    let s = s.trim();
    let s = s.strip_prefix("throttled=").unwrap_or(s);
    let s = s.strip_prefix("0x").unwrap_or(s);
    u32::from_str_radix(s, 16).ok().map(Throttled)
}

/// The CPU zone's temperature (`cpu-thermal`, `x86_pkg_temp`, … else the first zone).
fn cpu_temperature(thermal: &Path) -> Option<f64> {
    let mut zones: Vec<_> = std::fs::read_dir(thermal)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("thermal_zone"))
        })
        .collect();
    zones.sort();
    let read = |p: &Path| -> Option<(String, f64)> {
        let kind = std::fs::read_to_string(p.join("type")).ok()?;
        let milli: f64 = std::fs::read_to_string(p.join("temp"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some((kind.trim().to_string(), milli / 1000.0))
    };
    let all: Vec<(String, f64)> = zones.iter().filter_map(|z| read(z)).collect();
    all.iter()
        .find(|(k, _)| k.contains("cpu") || k.contains("pkg") || k.contains("soc"))
        .or(all.first())
        .map(|(_, t)| *t)
}

/// Sectors written (field 7 of a block device's `stat`) as bytes.
pub fn parse_block_stat(s: &str) -> Option<u64> {
    let sectors: u64 = s.split_whitespace().nth(6)?.parse().ok()?;
    Some(sectors * 512)
}

fn disk_written(data_dir: &Path) -> Option<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(data_dir).ok()?.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let sys = format!("/sys/dev/block/{major}:{minor}");
    let bytes = parse_block_stat(&std::fs::read_to_string(format!("{sys}/stat")).ok()?)?;
    let name = std::fs::read_link(&sys)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{major}:{minor}"));
    Some((name, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firmware_word_reads_as_now_and_since_boot() {
        let t = parse_throttled("0x50005\n").unwrap();
        let (now, since) = t.describe();
        assert_eq!(
            now,
            ["under-voltage (use a better power supply)", "throttled"]
        );
        assert_eq!(
            since,
            ["under-voltage (use a better power supply)", "throttled"]
        );
        assert_eq!(
            parse_throttled("throttled=0x0").unwrap().describe().0.len(),
            0
        );
        assert_eq!(
            parse_throttled("80000").unwrap().describe().1,
            ["soft temperature limit reached"]
        );
        assert!(parse_throttled("zz").is_none());
    }

    #[test]
    fn block_stat_and_thermal_zones_are_read() {
        let stat = "  120  3  4000  50  77  9  2048  300  0  100  350\n";
        assert_eq!(parse_block_stat(stat), Some(2048 * 512));
        assert_eq!(parse_block_stat("1 2"), None);
        let dir = tempfile::tempdir().unwrap();
        for (zone, kind, milli) in [
            ("thermal_zone1", "cpu-thermal", "48312"),
            ("thermal_zone0", "acpitz", "27800"),
        ] {
            let z = dir.path().join(zone);
            std::fs::create_dir(&z).unwrap();
            std::fs::write(z.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(z.join("temp"), format!("{milli}\n")).unwrap();
        }
        assert_eq!(cpu_temperature(dir.path()), Some(48.312));
        let h = read(dir.path());
        assert!(h.mem_total > 0 && h.mem_available <= h.mem_total && h.cpus >= 1);
    }
}
