//! How a start becomes the right binary, and how the process is asked to restart.
//!
//! - [`hand_over`] runs first in `run`: it asks [`Slots::launch`] which binary should run
//!   and [`exec`]s it (same PID, so systemd's notification and watchdog carry on), or
//!   returns when this binary is the one.
//! - [`RESTART`] and [`UPDATE_NOW`] are wishes raised from anywhere in the process (the
//!   admin API, the dashboard, the update worker) and awaited by the one task that acts on
//!   each; a restart ends the process with [`EXIT_RESTART`].

use std::io;
use std::path::Path;

use anyhow::Result;

use super::slots::{Launch, Slots, SLOT_ENV};

/// The exit status that asks the service manager to start the server again (the unit's
/// `RestartForceExitStatus=`): an update is waiting.
pub const EXIT_RESTART: u8 = 75;
/// The exit status of a trial that did not report healthy in time.
pub const EXIT_UNHEALTHY: u8 = 70;

/// A wish raised from anywhere in the process (the admin API, the dashboard, the update
/// worker) and awaited by the one task that acts on it.
pub struct Wish {
    raised: std::sync::atomic::AtomicBool,
    event: event_listener::Event,
}

impl Wish {
    const fn new() -> Wish {
        Wish {
            raised: std::sync::atomic::AtomicBool::new(false),
            event: event_listener::Event::new(),
        }
    }

    pub fn raise(&self) {
        self.raised.store(true, std::sync::atomic::Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether it was raised, lowering it.
    pub fn take(&self) -> bool {
        self.raised.swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once it is raised.
    pub async fn wait(&self) {
        loop {
            let listener = self.event.listen();
            if self.is_raised() {
                return;
            }
            listener.await;
        }
    }
}

/// The running server should stop and exit with [`EXIT_RESTART`], so that the service
/// manager starts it again through the launcher (an update was installed, or a slot
/// switched by hand).
pub static RESTART: Wish = Wish::new();
/// The update worker should look at the channel now and install what it finds, whatever
/// the window or a hold say (the dashboard's "update now").
pub static UPDATE_NOW: Wish = Wish::new();

/// At the start of `run`, before anything else: hands over to the slot that should run,
/// and returns only when this binary is the one (no slot is newer, a slot could not be
/// started, or this process already is a slot's).
pub fn hand_over(data_dir: &Path) -> Result<()> {
    if std::env::var_os(SLOT_ENV).is_some() {
        return Ok(());
    }
    let slots = Slots::at(data_dir);
    loop {
        let Launch::Exec { slot, binary } = slots.launch(super::manifest::RUNNING)? else {
            return Ok(());
        };
        tracing::info!(slot, binary = %binary.display(), "starting the updated binary");
        let e = exec(&slot, &binary);
        tracing::error!(slot, "the slot's binary cannot be started: {e}");
        if slots.trial().is_none_or(|t| t.slot != slot) {
            // The current slot itself: run this binary instead.
            return Ok(());
        }
        slots.exec_failed(&slot, &e)?;
    }
}

/// Hands this process over to `binary` with the same arguments and environment, marked
/// with its slot (execve(2): the same PID, so systemd's notification socket and watchdog
/// carry on); returns only when that fails.
// execve has no safe wrapper in the crates we use, and std's Command would bring the whole
// process-spawning code into the board binary for it.
#[allow(unsafe_code)]
pub fn exec(slot: &str, binary: &Path) -> io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let c = |b: Vec<u8>| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let built = (|| -> io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let program = c(binary.as_os_str().as_bytes().to_vec())?;
        let mut args = vec![program.clone()];
        for a in std::env::args_os().skip(1) {
            args.push(c(a.into_vec())?);
        }
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os().filter(|(k, _)| k != SLOT_ENV) {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            env.push(c(kv)?);
        }
        env.push(c(format!("{SLOT_ENV}={slot}").into_bytes())?);
        Ok((program, args, env))
    })();
    let (program, args, env) = match built {
        Ok(b) => b,
        Err(e) => return e,
    };
    let list = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (argv, envp) = (list(&args), list(&env));
    // SAFETY: `program` is a NUL-terminated path; `argv` and `envp` are null-terminated
    // arrays of pointers to NUL-terminated strings, all alive across the call. execve only
    // returns on failure, and then nothing was changed.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}
