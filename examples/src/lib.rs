//! Runnable demos of userlane and the parts of the example server
//! `userlane-server` (see `src/bin`).

#![warn(missing_docs)]

pub mod server;
