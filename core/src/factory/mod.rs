//! `ManagerFactory`, in layers (each module imports only those below it):
//!
//! - [`slots`]: the table rows behind the handles (manager and connection
//!   slots, their links and states);
//! - [`tables`]: the struct and its tables, the handle checks and the
//!   read-only queries;
//! - [`lanes`]: internal bookkeeping shared by commands and I/O;
//! - [`commands`]: commands from the application;
//! - [`io`]: the `handle_*` / `poll_*` I/O surface;
//! - [`view`]: the factory as the erased [`Lanes`](crate::Lanes) view.
//!
//! This module only declares them and re-exports the public names.

mod commands;
mod io;
mod lanes;
mod slots;
mod tables;
mod view;

pub use tables::{GatewayFactory, ManagerFactory, ServerFactory};
