//! HTTP transport: response and request bodies (`body`) and the hyper↔smol glue (`rt`).

pub mod body;
pub mod rt;

pub use body::{next_chunk, read_limited, Body, BodyError, FileBody};
