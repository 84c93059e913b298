//! Runnable demos of userlane; see the binaries in `src/bin`.
