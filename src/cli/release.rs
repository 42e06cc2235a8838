//! `pubky-edge release …`: the release key's tools, run offline by whoever holds the key
//! (it never goes near a box). `keygen` makes a release key, `sign` the signed manifest of
//! a built binary, `verify` checks a manifest (and a binary) as a box does before it keeps
//! a byte of an update.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::identity::Identity;
use crate::pubkey::PublicKey;
use crate::update::manifest::{self, Manifest, Version};

pub const USAGE: &str = "\
pubky-edge release — make and check signed releases (offline, where the release key is kept)

USAGE:
    pubky-edge release keygen FILE
        make a release key (64 hex characters, mode 0600) and print its public key
    pubky-edge release sign --key FILE --binary FILE --version V --target TRIPLE
                            --min-from V --store-format N [--notes-file FILE] [--out FILE]
        write the signed manifest of a built binary (to stdout without --out)
    pubky-edge release verify --release-key KEY MANIFEST [BINARY]
        check a signed manifest against the release key (and a binary against it), as a
        box does; exits 1 with the reason when either is refused
";

#[derive(Default)]
struct Opts<'a> {
    positional: Vec<&'a str>,
    key: Option<&'a str>,
    binary: Option<&'a str>,
    version: Option<&'a str>,
    target: Option<&'a str>,
    min_from: Option<&'a str>,
    store_format: Option<&'a str>,
    notes_file: Option<&'a str>,
    out: Option<&'a str>,
    release_key: Option<&'a str>,
}

fn parse<'a>(args: &[&'a str]) -> Result<Opts<'a>> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().copied().ok_or(anyhow!("{name} needs a value"));
        let slot = match *a {
            "--key" => &mut o.key,
            "--binary" => &mut o.binary,
            "--version" => &mut o.version,
            "--target" => &mut o.target,
            "--min-from" => &mut o.min_from,
            "--store-format" => &mut o.store_format,
            "--notes-file" => &mut o.notes_file,
            "--out" => &mut o.out,
            "--release-key" => &mut o.release_key,
            s if s.starts_with('-') => bail!("unknown release option {s} (see `release help`)"),
            s => {
                o.positional.push(s);
                continue;
            }
        };
        *slot = Some(value(a)?);
    }
    Ok(o)
}

fn required<'a>(v: Option<&'a str>, name: &str) -> Result<&'a str> {
    v.ok_or_else(|| anyhow!("release sign needs {name} (see `release help`)"))
}

pub fn run(args: &[&str]) -> Result<()> {
    let o = parse(args)?;
    match o.positional.as_slice() {
        [] | ["help"] => {
            print!("{USAGE}");
            Ok(())
        }
        ["keygen", file] => {
            let id = Identity::create_file(Path::new(file))?;
            println!("release key made in {file}; its public key:");
            println!("{}", id.public_key());
            Ok(())
        }
        ["sign"] => sign(&o),
        ["verify", manifest_file] => verify(&o, manifest_file, None),
        ["verify", manifest_file, binary] => verify(&o, manifest_file, Some(binary)),
        other => bail!(
            "unknown release command `{}` (see `release help`)",
            other.join(" ")
        ),
    }
}

fn sign(o: &Opts<'_>) -> Result<()> {
    let key = Identity::load_file(Path::new(required(o.key, "--key")?))?;
    let binary_path = required(o.binary, "--binary")?;
    let binary = std::fs::read(binary_path).with_context(|| format!("reading {binary_path}"))?;
    let version = required(o.version, "--version")?;
    let min_from = required(o.min_from, "--min-from")?;
    for (name, v) in [("--version", version), ("--min-from", min_from)] {
        if Version::parse(v).is_none() {
            bail!("{name} {v:?} is not MAJOR.MINOR.PATCH[-pre]");
        }
    }
    let store_format: u32 = required(o.store_format, "--store-format")?
        .parse()
        .context("--store-format needs a number")?;
    let notes = match o.notes_file {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?,
        None => String::new(),
    };
    let m = Manifest {
        version: version.into(),
        target: required(o.target, "--target")?.into(),
        size: binary.len() as u64,
        blake3: blake3::hash(&binary).to_hex().to_string(),
        min_from: min_from.into(),
        store_format,
        notes,
        released_at: crate::clock::now_secs(),
    };
    let signed = manifest::sign(&m, key.signing_key());
    match o.out {
        Some(out) => {
            std::fs::write(out, &signed).with_context(|| format!("writing {out}"))?;
            eprintln!(
                "signed {} {} for {} ({} bytes, BLAKE3 {}) into {out}",
                binary_path, m.version, m.target, m.size, m.blake3
            );
        }
        None => print!("{signed}"),
    }
    Ok(())
}

fn verify(o: &Opts<'_>, manifest_file: &str, binary: Option<&str>) -> Result<()> {
    let key = o
        .release_key
        .ok_or_else(|| anyhow!("release verify needs --release-key KEY"))?;
    let trusted = PublicKey::parse_z32(key).map_err(|e| anyhow!("--release-key {key:?}: {e}"))?;
    let signed = std::fs::File::open(manifest_file)
        .and_then(manifest::read_signed)
        .with_context(|| format!("reading {manifest_file}"))?;
    let m = manifest::open(&signed, &trusted).map_err(|e| anyhow!("{manifest_file}: {e}"))?;
    println!("signature:    ok (release key {trusted})");
    println!(
        "version:      {} (upgrades from {} on)",
        m.version, m.min_from
    );
    println!("target:       {}", m.target);
    println!("binary:       {} bytes, BLAKE3 {}", m.size, m.blake3);
    println!("store format: {}", m.store_format);
    println!("released:     {}", crate::clock::rfc3339(m.released_at));
    if let Some(b) = binary {
        let bytes = std::fs::read(b).with_context(|| format!("reading {b}"))?;
        m.check_binary(&bytes).map_err(|e| anyhow!("{b}: {e}"))?;
        println!("{b}: matches the manifest");
    }
    Ok(())
}
