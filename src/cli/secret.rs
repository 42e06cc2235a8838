//! Secrets a command asks for (the backup passphrase, a recovery file's passphrase): from a
//! file, else an environment variable, else the terminal with echo off.

use std::path::Path;

use anyhow::{Context, Result};

/// A secret from `file`, else the environment variable `env`, else the terminal.
pub fn input(file: Option<&Path>, env: &str, label: &str) -> Result<String> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Ok(p) = std::env::var(env) {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    prompt(label)
}

/// Reads a line from the terminal with echo off.
pub fn prompt(label: &str) -> Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    use std::io::{BufRead, Write};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context(
            "no terminal to ask for the backup passphrase; give --passphrase-file or \
             PUBKY_EDGE_BACKUP_PASSPHRASE",
        )?;
    let saved = tcgetattr(&tty).context("reading the terminal's mode")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Now, &quiet)?;
    let mut w = &tty;
    let _ = write!(w, "{label}");
    let _ = w.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, OptionalActions::Now, &saved);
    let _ = writeln!(w);
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
