//! Signup tokens created outside the server process. `pubky-edge token new` cannot open the
//! database while the server holds its lock, so it drops each new token as a file in
//! `<data>/signup-tokens/`; the server imports that spool into the store at start and
//! whenever a signup, a token check or the admin's token list needs it ([`import`],
//! [`find`]).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::auth::secrets::is_signup_token;
use crate::store::{SignupToken, Store, StoreError};

pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("signup-tokens")
}

/// Writes a token into the spool (mode 0600, fsync'd, atomically renamed into place).
pub fn enqueue(data_dir: &Path, token: &str) -> std::io::Result<()> {
    let dir = spool_dir(data_dir);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{token}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(token))?;
    fs::File::open(&dir)?.sync_all()
}

/// Moves spooled tokens into the store; returns how many were imported. Files that are not
/// token-shaped are left alone and reported.
pub async fn import(store: &Store, data_dir: &Path, now_secs: u64) -> usize {
    let dir = spool_dir(data_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return 0;
    };
    let mut imported = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !is_signup_token(&name) {
            tracing::warn!(file = %entry.path().display(), "not a signup token; left in place");
            continue;
        }
        let known = matches!(store.signup_token(&name), Ok(Some(_)));
        if !known {
            if let Err(e) = store.create_signup_token(&name, now_secs).await {
                tracing::error!("importing signup token: {e}");
                continue;
            }
            imported += 1;
        }
        let _ = fs::remove_file(entry.path());
    }
    imported
}

/// The signup token `token`, importing the spool first when the store does not know it.
pub async fn find(
    store: &Store,
    data_dir: &Path,
    token: &str,
    now_secs: u64,
) -> Result<Option<SignupToken>, StoreError> {
    if let Some(t) = store.signup_token(token)? {
        return Ok(Some(t));
    }
    import(store, data_dir, now_secs).await;
    store.signup_token(token)
}
