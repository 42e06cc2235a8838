//! The homeserver keypair in `<data>/secret`: 64 hex characters of the ed25519 seed, the
//! same format as the reference homeserver so an identity can move between
//! implementations. Created atomically with mode 0600; a file that group or others can
//! access, or that is malformed, stops start-up. `app` hands the key to the auth checks
//! (PoP audience), to PubkyTLS (the raw public key) and to the DHT publisher.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::pubkey::PublicKey;

pub const SECRET_FILE: &str = "secret";

#[derive(Debug)]
pub enum IdentityError {
    Io(PathBuf, std::io::Error),
    Permissions(PathBuf, u32),
    Malformed(PathBuf),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            IdentityError::Permissions(p, mode) => write!(
                f,
                "{} has mode {mode:04o}; it must not be accessible by group or others (chmod 600)",
                p.display()
            ),
            IdentityError::Malformed(p) => write!(
                f,
                "{} is not 64 hex characters of an ed25519 secret key",
                p.display()
            ),
        }
    }
}

impl std::error::Error for IdentityError {}

pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// Loads `<data_dir>/secret`, creating it with a fresh random key if absent.
    pub fn load_or_create(data_dir: &Path) -> Result<Identity, IdentityError> {
        let path = data_dir.join(SECRET_FILE);
        match fs::metadata(&path) {
            Ok(_) => Self::load(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(e) => Err(IdentityError::Io(path, e)),
        }
    }

    /// Loads `<data_dir>/secret`, which must exist.
    pub fn load_existing(data_dir: &Path) -> Result<Identity, IdentityError> {
        Self::load(&data_dir.join(SECRET_FILE))
    }

    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from(self.signing.verifying_key())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Loads a key file of this format from anywhere (a release key).
    pub fn load_file(path: &Path) -> Result<Identity, IdentityError> {
        Self::load(path)
    }

    /// Creates a key file of this format (mode 0600) at `path`, which must not exist.
    pub fn create_file(path: &Path) -> Result<Identity, IdentityError> {
        if path.exists() {
            return Err(IdentityError::Io(
                path.to_path_buf(),
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists already"),
            ));
        }
        Self::create(path)
    }

    fn load(path: &Path) -> Result<Identity, IdentityError> {
        let io = |e| IdentityError::Io(path.to_path_buf(), e);
        let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions(path.to_path_buf(), mode));
        }
        let text = fs::read_to_string(path).map_err(|_| IdentityError::Malformed(path.into()))?;
        let seed = parse_hex(text.trim()).ok_or_else(|| IdentityError::Malformed(path.into()))?;
        Ok(Self::from_seed(seed))
    }

    fn create(path: &Path) -> Result<Identity, IdentityError> {
        let io = |e| IdentityError::Io(path.to_path_buf(), e);
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(to_hex(&seed).as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&tmp, path).map_err(io)?;
        // A bare file name's parent is "", the current directory.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        fs::File::open(dir.unwrap_or(Path::new(".")))
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(Self::from_seed(seed))
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_and_reloads_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let p = dir.path().join(SECRET_FILE);
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.len(), 64);
        assert!(text
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }

    #[test]
    fn reference_format_zero_seed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(SECRET_FILE);
        fs::write(&p, "00".repeat(32)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let id = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(
            id.public_key().to_z32(),
            "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
        );
    }

    #[test]
    fn refuses_readable_or_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(SECRET_FILE);
        fs::write(&p, "11".repeat(32)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Permissions(_, 0o644))
        ));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, "zz".repeat(32)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Malformed(_))
        ));
        fs::write(&p, "11".repeat(31)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Malformed(_))
        ));
    }
}
