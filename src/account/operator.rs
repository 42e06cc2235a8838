//! The operator's secret: the admin API's password. There is no built-in one. It is, in
//! order: the first line of `admin.password_file`, `admin.password`, or the first line of
//! `<data>/admin-password`, which the server creates at its first start with a random
//! password (mode 0600) when nothing is configured. `pubky-edge admin …` reads the same
//! places, so the operator never has to type it. [`check_password`] is the one check of a
//! password given over the network (the admin API's header, WebDAV's Basic credentials).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Admin;
use crate::limits::attempts::Attempts;

/// Why a password given over the network was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many wrong ones from this address lately: retry after this many seconds.
    Throttled(u64),
    Missing,
    Wrong,
}

/// Checks `given` (`None`: none was given) with `matches`; wrong ones count against
/// `peer`'s address, which is refused for a while after too many.
pub fn check_password(
    attempts: &Attempts,
    peer: std::net::IpAddr,
    given: Option<&[u8]>,
    matches: impl FnOnce(&[u8]) -> bool,
    now: std::time::Instant,
) -> Result<(), Refused> {
    attempts.check(peer, now).map_err(Refused::Throttled)?;
    match given {
        None => Err(Refused::Missing),
        Some(v) if matches(v) => {
            attempts.succeeded(peer);
            Ok(())
        }
        Some(_) => {
            attempts.failed(peer, now);
            Err(Refused::Wrong)
        }
    }
}

pub use crate::auth::password::same_password;

/// The weak password older configs shipped; refused on a listener beyond loopback.
pub const WEAK_PASSWORD: &str = "admin";

/// Where a generated password lives.
pub fn generated_file(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-password")
}

fn first_line(path: &Path) -> Result<String, String> {
    Ok(fs::read_to_string(path)
        .map_err(|e| format!("cannot read the admin password {}: {e}", path.display()))?
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

/// The configured password, if one is configured.
fn configured(admin: &Admin) -> Result<Option<String>, String> {
    match &admin.password_file {
        Some(f) => first_line(f).map(Some),
        None if !admin.password.is_empty() => Ok(Some(admin.password.clone())),
        None => Ok(None),
    }
}

/// The password the admin listener checks, creating `<data>/admin-password` if nothing is
/// configured and it does not exist yet. An empty password is refused, and so is the weak
/// one unless the listener is on loopback.
pub fn server_password(admin: &Admin, data_dir: &Path) -> Result<String, String> {
    let pw = match configured(admin)? {
        Some(pw) => pw,
        None => generated(data_dir)?,
    };
    if pw.is_empty() {
        return Err("the admin password is empty".into());
    }
    if pw == WEAK_PASSWORD && !admin.listen_socket.ip().is_loopback() {
        return Err(format!(
            "admin.listen_socket {} is reachable beyond this machine, so the password \
             \"{WEAK_PASSWORD}\" is refused; set admin.password or admin.password_file, or \
             leave both empty for a generated one",
            admin.listen_socket
        ));
    }
    Ok(pw)
}

/// The password a client on this machine uses: the configured one, else the generated
/// file (never created here: only the server creates it).
pub fn client_password(admin: &Admin, data_dir: &Path) -> Result<String, String> {
    match configured(admin)? {
        Some(pw) => Ok(pw),
        None => first_line(&generated_file(data_dir)).map_err(|e| {
            format!(
                "{e} (the server writes it at its first start; or set PUBKY_EDGE_ADMIN_PASSWORD)"
            )
        }),
    }
}

/// Reads `<data>/admin-password`, creating it (0600, 24 random characters) if missing.
fn generated(data_dir: &Path) -> Result<String, String> {
    secret_file(&generated_file(data_dir), "the admin password")
}

/// The first line of the secret file `path`, which is created (0600, 24 random characters,
/// flushed) if missing; `what` names it in the log.
pub fn secret_file(path: &Path, what: &str) -> Result<String, String> {
    if path.exists() {
        return first_line(path);
    }
    let pw = crate::auth::secrets::new_password();
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(format!("{pw}\n").as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    tracing::info!(file = %path.display(), "generated {what}");
    Ok(pw)
}

#[cfg(test)]
mod tests {

    #[test]
    fn network_passwords_are_compared_and_throttled() {
        let attempts = Attempts::default();
        let (peer, now) = ("192.0.2.1".parse().unwrap(), std::time::Instant::now());
        let check = |given: Option<&[u8]>| {
            check_password(
                &attempts,
                peer,
                given,
                |g| same_password(g, "from-file"),
                now,
            )
        };
        assert_eq!(check(Some(b"from-file")), Ok(()));
        assert_eq!(check(None), Err(Refused::Missing));
        assert_eq!(check(Some(b"from-fil")), Err(Refused::Wrong));
        let mut throttled = false;
        for _ in 0..50 {
            throttled |= matches!(check(Some(b"guess")), Err(Refused::Throttled(_)));
        }
        assert!(throttled, "wrong guesses from one address are throttled");
        assert!(!same_password(b"from-fil", "from-file"));
    }

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn admin(listen: &str, pw: &str) -> Admin {
        Admin {
            enabled: true,
            listen_socket: listen.parse().unwrap(),
            password: pw.into(),
            password_file: None,
        }
    }

    #[test]
    fn password_rules() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            server_password(&admin("127.0.0.1:6288", "admin"), d).unwrap(),
            "admin"
        );
        assert!(server_password(&admin("0.0.0.0:6288", "admin"), d).is_err());
        assert!(server_password(&admin("192.168.1.2:6288", "admin"), d).is_err());
        assert_eq!(
            server_password(&admin("0.0.0.0:6288", "s3cret"), d).unwrap(),
            "s3cret"
        );
        let f = d.join("pw");
        std::fs::write(&f, "from-file\nignored\n").unwrap();
        let mut c = admin("0.0.0.0:1", "admin");
        c.password_file = Some(f);
        assert_eq!(server_password(&c, d).unwrap(), "from-file");
        assert_eq!(client_password(&c, d).unwrap(), "from-file");
    }

    #[test]
    fn nothing_configured_means_a_generated_private_password() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let none = admin("0.0.0.0:6288", "");
        assert!(
            client_password(&none, d).is_err(),
            "only the server creates it"
        );
        let pw = server_password(&none, d).unwrap();
        assert_eq!(pw.len(), 24);
        assert_ne!(pw, WEAK_PASSWORD);
        let mode = std::fs::metadata(generated_file(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(server_password(&none, d).unwrap(), pw, "kept across starts");
        assert_eq!(client_password(&none, d).unwrap(), pw);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(server_password(&none, other.path()).unwrap(), pw);
    }
}
