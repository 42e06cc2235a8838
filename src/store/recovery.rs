//! Opening the database after an unclean stop. sled 0.34 replays its log at open, and for
//! some torn logs it panics instead of returning an error (seen here after a power cut in
//! relaxed mode: "tried to serialize Uninitialized", sled issue #1387). `open_db` makes
//! that an ordinary [`StoreError::Unrecoverable`] where panics unwind (tests, debug builds);
//! release builds abort on panic, so [`install_panic_note`] makes the panic message say
//! what happened and what to do instead of leaving a bare backtrace in the journal.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use super::StoreError;

thread_local! {
    /// The database this thread is opening, for the panic hook.
    static OPENING: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// What the operator reads when the database cannot be opened.
pub fn damaged_note(db: &Path) -> String {
    format!(
        "the database in {} could not be recovered: its storage engine (sled) failed while \
         replaying its log after an unclean stop. pubky-edge has removed nothing. Keep a \
         copy of the whole data directory before trying anything (see README, \"When the \
         database does not open\")",
        db.display()
    )
}

/// Chains a panic hook that adds [`damaged_note`] when the panic happened while this
/// thread was opening a database. Called once at start by the binary; only needed where a
/// panic aborts (where it unwinds, `open_db` returns the note as an error).
pub fn install_panic_note() {
    if cfg!(panic = "unwind") {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if let Some(db) = OPENING.with(|o| o.borrow().clone()) {
            eprintln!("pubky-edge: {}", damaged_note(&db));
        }
    }));
}

/// Runs `open` (sled's open of `db`), turning a panic into an error.
pub(super) fn open_db<T>(
    db: &Path,
    open: impl FnOnce() -> Result<T, sled::Error>,
) -> Result<T, StoreError> {
    OPENING.with(|o| *o.borrow_mut() = Some(db.to_path_buf()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(open));
    OPENING.with(|o| *o.borrow_mut() = None);
    match result {
        Ok(opened) => Ok(opened?),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(StoreError::Unrecoverable(format!(
                "{} (sled: {why})",
                damaged_note(db)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_opening_becomes_an_error_naming_the_database() {
        let db = Path::new("/var/lib/pubky-edge/db");
        let r: Result<(), _> = open_db(db, || panic!("tried to serialize Uninitialized"));
        let Err(StoreError::Unrecoverable(msg)) = r else {
            panic!("expected Unrecoverable");
        };
        assert!(
            msg.contains("/var/lib/pubky-edge/db could not be recovered"),
            "{msg}"
        );
        assert!(
            msg.ends_with("(sled: tried to serialize Uninitialized)"),
            "{msg}"
        );
        // the marker is cleared, so a later unrelated panic gets no database note
        assert!(OPENING.with(|o| o.borrow().is_none()));
    }

    #[test]
    fn errors_and_successes_pass_through() {
        let db = Path::new("db");
        assert_eq!(open_db(db, || Ok(7)).unwrap(), 7);
        let r: Result<(), _> = open_db(db, || Err(sled::Error::Unsupported("old format".into())));
        assert!(matches!(r, Err(StoreError::Db(m)) if m.contains("old format")));
    }
}
