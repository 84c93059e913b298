//! The example server: a demo agent over userlane's isolated lanes, a
//! service API, health and metrics, and a browser page. Metrics and the
//! detailed health check move to an ops listener in production and staging
//! (see [`ops`]).

pub mod agent;
pub mod api;
pub mod batch;
pub mod cli;
pub mod health;
pub mod metrics;
pub mod ops;
pub mod protocol;
pub mod tokens;

/// The self-contained browser page served at `/`.
pub const PAGE: &str = include_str!("page.html");
