//! HTTP transport: the accept loop and its limits (`server`, `capacity`), response and
//! request bodies (`body`), and the hyper↔smol glue (`rt`). Requests leave this module as
//! `Request<Incoming>` + `ConnInfo` into the application handler, which returns
//! `Response<Body>`.

pub mod body;
pub mod capacity;
pub mod rt;
pub mod server;

pub use body::{next_chunk, read_limited, Body, BodyError, FileBody};
pub use capacity::ConnStats;
pub use server::{serve, Acceptor, ConnInfo, PlainTcp, ServerLimits};
