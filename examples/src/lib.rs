//! Runnable demos of userlane and the parts of the example server
//! `userlane-server` (see `src/bin`).

pub mod server;
