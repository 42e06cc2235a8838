//! Board overlays: the files in `boards/`, embedded in the binary, each holding only the
//! config keys in which a board differs from the built-in defaults. `--board NAME` picks one,
//! `--board FILE` reads one from disk, `--board auto` recognises the board from the device
//! tree. The chosen overlay becomes the layer between the defaults and the config file
//! (`config::Config::load`).

use std::path::Path;

/// Every overlay in `boards/`, by name.
pub const BOARDS: &[(&str, &str)] = &[
    ("pi-zero", include_str!("../../boards/pi-zero.toml")),
    ("pi-zero-2w", include_str!("../../boards/pi-zero-2w.toml")),
    ("pi3", include_str!("../../boards/pi3.toml")),
    ("pi4", include_str!("../../boards/pi4.toml")),
    ("pi5", include_str!("../../boards/pi5.toml")),
    (
        "generic-arm64",
        include_str!("../../boards/generic-arm64.toml"),
    ),
    ("qemu-virt", include_str!("../../boards/qemu-virt.toml")),
];

/// An overlay ready to be layered: a name for messages and the TOML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub name: String,
    pub toml: String,
}

/// The embedded overlay called `name`.
pub fn embedded(name: &str) -> Option<&'static str> {
    BOARDS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Resolves a `--board` argument: `auto`, an embedded name, or a path to a TOML file (anything
/// containing `/` or ending in `.toml`). `auto` with an unrecognised board means no overlay.
pub fn resolve(arg: &str) -> Result<Option<Overlay>, String> {
    let named = |name: &str| {
        embedded(name).map(|t| Overlay {
            name: format!("board {name}"),
            toml: t.to_string(),
        })
    };
    if arg == "auto" {
        let model = read_dt("model");
        let compatible = read_dt("compatible");
        return Ok(detect(&model, &compatible, std::env::consts::ARCH).and_then(named));
    }
    if arg.contains('/') || arg.ends_with(".toml") {
        let toml = std::fs::read_to_string(Path::new(arg))
            .map_err(|e| format!("cannot read board overlay {arg}: {e}"))?;
        return Ok(Some(Overlay {
            name: arg.to_string(),
            toml,
        }));
    }
    named(arg).map(Some).ok_or_else(|| {
        let names: Vec<&str> = BOARDS.iter().map(|(n, _)| *n).collect();
        format!(
            "unknown board `{arg}`; known: {}, auto, or a file",
            names.join(", ")
        )
    })
}

/// A device-tree property as text (NUL separators become newlines); empty if absent. Read
/// from /sys because the service's `ProcSubset=pid` hides /proc/device-tree.
fn read_dt(prop: &str) -> String {
    std::fs::read(Path::new("/sys/firmware/devicetree/base").join(prop))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', "\n"))
        .unwrap_or_default()
}

/// Picks the overlay for a device-tree `model` and `compatible` list on CPU `arch`. Any
/// other ARM64 machine with a device tree is `generic-arm64`; machines without one (x86
/// desktops, ACPI servers) get no overlay.
pub fn detect(model: &str, compatible: &str, arch: &str) -> Option<&'static str> {
    const MODELS: &[(&str, &str)] = &[
        ("Raspberry Pi 5", "pi5"),
        ("Raspberry Pi Compute Module 5", "pi5"),
        ("Raspberry Pi 500", "pi5"),
        ("Raspberry Pi 4", "pi4"),
        ("Raspberry Pi 400", "pi4"),
        ("Raspberry Pi Compute Module 4", "pi4"),
        ("Raspberry Pi Zero 2", "pi-zero-2w"),
        ("Raspberry Pi 3", "pi3"),
        ("Raspberry Pi Compute Module 3", "pi3"),
        ("Raspberry Pi 2", "pi3"),
        ("Raspberry Pi Zero", "pi-zero"),
        ("Raspberry Pi Model", "pi-zero"),
        ("Raspberry Pi Compute Module Rev", "pi-zero"),
    ];
    if let Some((_, board)) = MODELS.iter().find(|(m, _)| model.starts_with(m)) {
        return Some(board);
    }
    if compatible.lines().any(|c| c == "linux,dummy-virt") {
        return Some("qemu-virt");
    }
    (arch == "aarch64" && !(model.is_empty() && compatible.is_empty())).then_some("generic-arm64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_TOML};
    use toml::{Table, Value};

    /// Every leaf key of `t` as (dotted name, value).
    fn leaves(t: &Table, prefix: &str, out: &mut Vec<(String, Value)>) {
        for (k, v) in t {
            let full = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Table(sub) => leaves(sub, &full, out),
                v => out.push((full, v.clone())),
            }
        }
    }

    fn lookup<'a>(t: &'a Table, dotted: &str) -> Option<&'a Value> {
        let mut parts = dotted.split('.');
        let mut v = t.get(parts.next()?)?;
        for p in parts {
            v = v.as_table()?.get(p)?;
        }
        Some(v)
    }

    #[test]
    fn every_overlay_validates_and_changes_only_what_it_should() {
        let defaults: Table = toml::from_str(DEFAULT_TOML).unwrap();
        let default_dbg = format!("{:?}", Config::defaults());
        for (name, text) in BOARDS {
            let loaded = Config::from_layers(&[(name, text)])
                .unwrap_or_else(|e| panic!("board {name}: {e}"));
            assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
            assert_ne!(
                format!("{:?}", loaded.config),
                default_dbg,
                "{name} changes nothing"
            );
            let overlay: Table = toml::from_str(text).unwrap();
            let mut keys = Vec::new();
            leaves(&overlay, "", &mut keys);
            assert!(!keys.is_empty(), "{name} is empty");
            for (key, value) in keys {
                assert_ne!(
                    lookup(&defaults, &key),
                    Some(&value),
                    "{name}: {key} repeats the default"
                );
            }
            // Each key line is preceded by a comment saying why.
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for (i, line) in lines.iter().enumerate() {
                if line.contains(" = ") && !line.starts_with('#') {
                    assert!(
                        i > 0 && lines[i - 1].starts_with('#'),
                        "{name}: `{line}` has no comment above it"
                    );
                }
            }
        }
    }

    #[test]
    fn every_file_in_boards_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return; // the source tree is not visible (e.g. tests copied to a device)
        };
        let mut on_disk: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = BOARDS.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn resolve_names_files_and_errors() {
        let o = resolve("pi4").unwrap().unwrap();
        assert_eq!(o.name, "board pi4");
        assert_eq!(o.toml, embedded("pi4").unwrap());
        let e = resolve("pi9").unwrap_err();
        assert!(
            e.contains("unknown board `pi9`") && e.contains("qemu-virt"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mine.toml");
        std::fs::write(&f, "[storage]\ncache_capacity_mb = 3\n").unwrap();
        let o = resolve(f.to_str().unwrap()).unwrap().unwrap();
        assert!(o.toml.contains("cache_capacity_mb = 3"));
        assert!(resolve("/nonexistent/board.toml").is_err());
    }

    #[test]
    fn detection_from_the_device_tree() {
        let pi = |m: &str| detect(m, "", "aarch64");
        assert_eq!(pi("Raspberry Pi 5 Model B Rev 1.0"), Some("pi5"));
        assert_eq!(pi("Raspberry Pi 4 Model B Rev 1.4"), Some("pi4"));
        assert_eq!(pi("Raspberry Pi 400 Rev 1.0"), Some("pi4"));
        assert_eq!(pi("Raspberry Pi Zero 2 W Rev 1.0"), Some("pi-zero-2w"));
        assert_eq!(pi("Raspberry Pi 3 Model B Plus Rev 1.3"), Some("pi3"));
        assert_eq!(
            detect("Raspberry Pi Zero W Rev 1.1", "", "arm"),
            Some("pi-zero")
        );
        assert_eq!(
            detect("Raspberry Pi Model B Rev 2", "", "arm"),
            Some("pi-zero")
        );
        assert_eq!(
            detect("", "linux,dummy-virt\n", "aarch64"),
            Some("qemu-virt")
        );
        assert_eq!(
            detect("Pine64 RockPro64", "pine64,rockpro64\n", "aarch64"),
            Some("generic-arm64")
        );
        assert_eq!(detect("", "", "x86_64"), None);
        assert_eq!(detect("", "", "aarch64"), None);
    }
}
