//! The security validation suite of userlane, and the reference model and
//! harness its fuzzer uses.
//!
//! - [`corpus`]: the seed corpus of the `state_machine` fuzz target;
//! - [`external`]: the checks of the `decode_external` fuzz target;
//! - [`model`]: the rules of `userlane-core` written plainly with std
//!   collections, the specification in executable form;
//! - [`ops`]: operations as data ([`ops::Op`]), postcard-encoded in the fuzz
//!   corpus;
//! - [`harness`]: applies operations to the core and the model side by side
//!   and checks that they agree and that the invariants hold;
//! - [`support`]: helpers for the scenario tests under `tests/`.

pub mod corpus;
pub mod external;
pub mod harness;
pub mod model;
pub mod ops;
pub mod support;
