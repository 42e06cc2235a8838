//! The household's rules, free of HTTP types: who is asking ([`caller`]), what they may
//! read and write ([`access`]), who may create an account and sign in ([`signup`]), and the
//! signup tokens dropped by `pubky-edge token new` ([`spool`]), the operator's
//! password ([`operator`]), the owner who claimed the box and their signed-in browsers
//! ([`owner`], [`owner_sessions`]) and WebDAV write locks ([`locks`]). Each rule exists once; the
//! functions take the store, the caller and `now`, and answer with an [`Error`] that
//! `http::response` turns into a status in one table.

pub mod access;
pub mod caller;
pub mod locks;
pub mod operator;
pub mod owner;
pub mod owner_sessions;
pub mod people;
pub mod signup;
pub mod spool;

use crate::store::StoreError;

pub use caller::{AuthMethod, Caller, CookiePolicy, Credentials, GrantSession};

/// Why the household's rules refused a request.
#[derive(Debug)]
pub enum Error {
    /// A route that needs a signed-in caller has none.
    NoSession,
    /// Private data asked for without any credential.
    AuthRequired,
    /// A path outside `/pub/` and `/priv/`.
    OutsideStorage { write: bool },
    /// The caller is signed in as someone other than the tenant.
    WrongUser,
    /// The caller's capabilities do not cover the path.
    NoAccess { write: bool },
    /// A private stream filter that is not scoped to exactly one user.
    PrivateNeedsOneUser,
    /// A write aimed at a directory.
    NotAFile,
    /// The account does not exist.
    UnknownUser,
    /// The account is disabled by the admin.
    Disabled,
    /// The admin restricted this user's writes to other paths.
    PathNotAllowed,
    /// Signup for an account that exists.
    UserExists,
    /// Signup without a token where one is required.
    TokenRequired,
    /// Another lock lives on the path, and the request names none.
    Locked,
    /// The request names lock tokens, none of them the path's live lock.
    LockMismatch,
    /// The lock a write held was released before the write could land.
    LockLost,
    /// `UNLOCK` of a token that is not the path's live lock.
    NoSuchLock,
    /// The user (or the server) holds as many locks as it may.
    TooManyLocks,
    /// The store failed (or refused: quota, unknown token, …).
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::NoSession => "No authenticated session found",
            Error::AuthRequired => "Authentication required to read private storage",
            Error::OutsideStorage { write: false } => {
                "Reading from directories other than '/pub/' and '/priv/' is forbidden"
            }
            Error::OutsideStorage { write: true } => {
                "Writing to directories other than '/pub/' and '/priv/' is forbidden"
            }
            Error::WrongUser => "Session user does not match target tenant",
            Error::NoAccess { write: false } => "Session does not have read access to path",
            Error::NoAccess { write: true } => "Session does not have write access to path",
            Error::PrivateNeedsOneUser => "A private read must be scoped to exactly one user",
            Error::NotAFile => "Target path must be a file",
            Error::UnknownUser => "Not Found",
            Error::Disabled => "User is disabled",
            Error::PathNotAllowed => "Write to this path is not allowed",
            Error::UserExists => "User already exists",
            Error::TokenRequired => "Token required",
            Error::Locked => "Resource is locked",
            Error::LockMismatch => "The If header does not name the live lock on this path",
            Error::LockLost => "The lock was released before the write could land",
            Error::NoSuchLock => "No lock with this token on this path",
            Error::TooManyLocks => "Too many locks held; release some or let them expire",
            Error::Store(e) => return write!(f, "{e}"),
        })
    }
}
