//! HTTP transport. So far only the hyper↔smol glue (`rt`).

pub mod rt;
