//! The service manager's notification protocol (`Type=notify` in systemd): `READY=1` once the
//! listeners are bound, `STOPPING=1` when the drain starts, and `WATCHDOG=1` pings at half the
//! interval systemd asks for. One datagram per message to the socket named in
//! `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`). Outside systemd
//! the variable is unset and every call is a no-op. `cli::serve` calls it around `app::start`.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (e.g. `"READY=1"`) to `$NOTIFY_SOCKET`. Returns whether a message was sent;
/// failures are logged and otherwise ignored, since the service runs fine without them.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    match send(&socket, state) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, state, "sd_notify failed");
            false
        }
    }
}

/// Sends one notification datagram to `socket` (a path or `@abstract-name`).
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => send_abstract(&sock, &bytes[1..], state),
        Some(b'/') => sock.send_to(state.as_bytes(), socket).map(drop),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither a path nor an @abstract name",
        )),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(sock: &UnixDatagram, name: &[u8], state: &str) -> io::Result<()> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(state.as_bytes(), &addr).map(drop)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

/// How often to ping the watchdog, if systemd asked for pings: half of `$WATCHDOG_USEC`, and
/// only when `$WATCHDOG_PID` is unset or names this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// The pure part of [`watchdog_interval`].
pub fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// Pings the watchdog every `every` until dropped. Runs on the server's executor, so a
/// wedged executor stops the pings and systemd restarts the service.
pub async fn watchdog(every: Duration) {
    loop {
        notify("WATCHDOG=1");
        smol::Timer::after(every).await;
    }
}

/// Runs `f` (a long part of the start: opening the store, which may first migrate it) while
/// telling systemd every 10 s that the start goes on (`EXTEND_TIMEOUT_USEC`), so that
/// `TimeoutStartSec` does not kill it half-way, to start the same work over.
pub fn while_starting<T>(f: impl FnOnce() -> T) -> T {
    keep_starting(
        std::env::var_os("NOTIFY_SOCKET"),
        Duration::from_secs(10),
        f,
    )
}

/// [`while_starting`] with its socket and interval given: each message extends the start
/// by three intervals, and none is sent once `f` has returned.
pub fn keep_starting<T>(
    socket: Option<std::ffi::OsString>,
    every: Duration,
    f: impl FnOnce() -> T,
) -> T {
    let Some(socket) = socket else {
        return f();
    };
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let state = format!("EXTEND_TIMEOUT_USEC={}", (every * 3).as_micros());
    let pinger = std::thread::Builder::new()
        .name("start-extend".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(every) {
                if let Err(e) = send(&socket, &state) {
                    tracing::warn!(error = %e, "sd_notify failed");
                }
            }
        });
    let out = f();
    drop(done);
    if let Ok(t) = pinger {
        let _ = t.join();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_start_is_extended_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let every = Duration::from_millis(40);
        let got = keep_starting(Some(path.clone().into()), every, || {
            std::thread::sleep(Duration::from_millis(200));
            7
        });
        assert_eq!(got, 7);
        rx.set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        let mut seen = 0;
        let mut buf = [0u8; 64];
        while let Ok(n) = rx.recv(&mut buf) {
            assert_eq!(&buf[..n], b"EXTEND_TIMEOUT_USEC=120000");
            seen += 1;
        }
        // About five intervals passed; none is sent after the start ended.
        assert!((2..=6).contains(&seen), "{seen} messages");
        assert_eq!(keep_starting(None, every, || 8), 8);
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pubky-edge-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn rejects_relative_names() {
        assert!(send(OsStr::new("relative"), "READY=1").is_err());
        assert!(send(OsStr::new(""), "READY=1").is_err());
    }

    #[test]
    fn watchdog_interval_is_half_and_respects_pid() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
    }
}

/// Which of the sockets systemd passed (`LISTEN_FDS`, named by `LISTEN_FDNAMES`) is called
/// `name`, as its descriptor number; `None` outside socket activation or when it is not
/// among them. The variables must be meant for this process (`LISTEN_PID`).
pub fn passed_fd(name: &str) -> Option<i32> {
    let var = |k: &str| std::env::var(k).ok();
    passed_fd_in(
        var("LISTEN_PID")?.as_str(),
        var("LISTEN_FDS")?.as_str(),
        var("LISTEN_FDNAMES").as_deref().unwrap_or(""),
        std::process::id(),
        name,
    )
}

fn passed_fd_in(pid: &str, fds: &str, names: &str, me: u32, name: &str) -> Option<i32> {
    /// The first passed descriptor (`SD_LISTEN_FDS_START`).
    const FIRST: i32 = 3;
    if pid.parse::<u32>().ok()? != me {
        return None;
    }
    let n: i32 = fds.parse().ok()?;
    let i = names.split(':').position(|n| n == name)? as i32;
    (i < n).then_some(FIRST + i)
}

/// The listening TCP socket systemd passed as `name` (see [`passed_fd`]), non-blocking.
#[allow(
    unsafe_code,
    reason = "takes ownership of a descriptor systemd passed by number"
)]
pub fn passed_listener(name: &str) -> Option<io::Result<std::net::TcpListener>> {
    use std::os::fd::FromRawFd;
    let fd = passed_fd(name)?;
    // SAFETY: systemd passed `fd` open to this process (LISTEN_PID is ours) and nothing
    // else in the process owns it: only this function takes named descriptors, and the
    // caller takes it once at start-up.
    let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    Some(l.set_nonblocking(true).map(|()| l))
}

#[cfg(test)]
mod passed_tests {
    use super::passed_fd_in;

    #[test]
    fn named_descriptors_count_from_three_and_only_for_this_process() {
        assert_eq!(
            passed_fd_in("42", "1", "dashboard", 42, "dashboard"),
            Some(3)
        );
        assert_eq!(
            passed_fd_in("42", "2", "other:dashboard", 42, "dashboard"),
            Some(4)
        );
        assert_eq!(passed_fd_in("41", "1", "dashboard", 42, "dashboard"), None);
        assert_eq!(passed_fd_in("42", "1", "other", 42, "dashboard"), None);
        assert_eq!(
            passed_fd_in("42", "1", "x:dashboard", 42, "dashboard"),
            None
        );
    }
}
