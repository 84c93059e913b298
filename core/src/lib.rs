//! # userlane-core
//!
//! A deterministic, sans-IO state machine that gives every user of a
//! real-time service an **isolated, bounded lane**: one manager per user,
//! created by a [`ManagerFactory`], addressed only through a
//! generation-checked [`ManagerHandle`].
//!
//! The crate does no I/O, reads no clock (the caller passes [`Instant`]s),
//! uses no randomness, no async (the optional `shim` adds async wrappers)
//! and no allocation; it is `#![no_std]` unless the `std` feature is on, and
//! `#![forbid(unsafe_code)]`, and no input sequence makes it panic. All
//! storage is preallocated in tables sized by const generics, so a factory
//! can live in a `static` on a microcontroller or in a `Box` on a server.
//!
//! ## Method families
//!
//! Following quinn-proto:
//!
//! - **commands** from the application, imperative verbs:
//!   [`create_manager`](ManagerFactory::create_manager),
//!   [`create_offline_manager`](ManagerFactory::create_offline_manager),
//!   [`add_connection`](ManagerFactory::add_connection),
//!   [`remove_connection`](ManagerFactory::remove_connection),
//!   [`send_to_user`](ManagerFactory::send_to_user),
//!   [`send_to_connection`](ManagerFactory::send_to_connection),
//!   [`close_connection`](ManagerFactory::close_connection),
//!   [`deactivate`](ManagerFactory::deactivate),
//!   [`close_all`](ManagerFactory::close_all);
//! - **facts** from outside, `handle_*`:
//!   [`handle_activity`](ManagerFactory::handle_activity) (a frame or pong
//!   arrived), [`handle_inbound`](ManagerFactory::handle_inbound) (a message
//!   arrived: checked against the inbound budget), [`handle_closed`](ManagerFactory::handle_closed) (the socket is
//!   gone), [`handle_timeout`](ManagerFactory::handle_timeout) (a deadline passed);
//! - **outputs** the caller must act on, `poll_*`:
//!   [`poll_event`](ManagerFactory::poll_event),
//!   [`poll_transmit`](ManagerFactory::poll_transmit),
//!   [`poll_timeout`](ManagerFactory::poll_timeout);
//! - **queries**, which never change state (reading stats or listing
//!   connections is never activity): [`connections`](ManagerFactory::connections),
//!   [`manager_stats`](ManagerFactory::manager_stats),
//!   [`context`](ManagerFactory::context), [`stats`](ManagerFactory::stats).
//!
//! A refused send hands its payload back in a [`SendError`], so the caller
//! can free or retry it, and drop it outside any lock.
//!
//! ## One seam for every capacity
//!
//! [`Lanes<P>`](Lanes) is the same surface as an object-safe trait, so code
//! above the core (a harness, a dispatcher, the legacy facade) takes
//! `&mut dyn Lanes<P>` whatever the factory's capacities
//! ([`ManagerFactory::as_lanes`]); it also carries the one lookup-or-create,
//! `manager_or_create_with(user_id, || context, now)`. The capacities are
//! associated constants ([`ManagerFactory::CAPACITY`], checked by
//! [`Config::validate`]), and [`GatewayFactory`] / [`ServerFactory`] name the
//! two documented profiles.
//!
//! ## Polling contract (the drain rule)
//!
//! After every command or `handle_*` call:
//!
//! 1. drain [`poll_event`](ManagerFactory::poll_event) until it returns `None`
//!    (or take them all at once with
//!    [`drain_events`](ManagerFactory::drain_events)); for each
//!    [`Event::Transmit`] or [`Event::ConnectionClosed`], wake the writer of
//!    that connection;
//! 2. each writer drains [`poll_transmit`](ManagerFactory::poll_transmit) for
//!    its connection until `Ok(None)` (nothing more for now), writing
//!    messages in order and, after a [`Transmit::Close`], closing the socket
//!    and calling [`handle_closed`](ManagerFactory::handle_closed); an `Err`
//!    means the connection is gone: its writer stops;
//! 3. read [`poll_timeout`](ManagerFactory::poll_timeout) and arm **one**
//!    timer for it; when it fires, call
//!    [`handle_timeout`](ManagerFactory::handle_timeout) and start again at 1.
//!
//! Connection events are flags on the connection (never lost, never
//! duplicated). Manager lifecycle events wait in a queue of `EVENTS` entries;
//! a command that would overflow it fails with [`Error::EventsPending`]
//! instead of losing an event, so a caller that follows the drain rule never
//! sees that error.
//!
//! ## Example
//!
//! ```
//! use userlane_core::{Config, Event, Instant, ManagerFactory, SendOutcome, Transmit, UserContext};
//!
//! // 8 users, 16 connections, 128 queued messages in total.
//! let mut lanes: ManagerFactory<&str, 8, 16, 128> =
//!     ManagerFactory::new(Config::for_capacity(8, 16)).unwrap();
//! let now = Instant::from_millis(0);
//!
//! let alice = UserContext::new("alice", "thread-1", "run-1", "req-1").unwrap();
//! let manager = lanes.create_manager(alice.clone(), now).unwrap();
//! let tab = lanes.add_connection(manager, &alice, now).unwrap();
//!
//! // A connection that claims to be bob is refused by alice's manager.
//! let bob = UserContext::new("bob", "thread-9", "run-9", "req-9").unwrap();
//! assert!(lanes.add_connection(manager, &bob, now).is_err());
//!
//! assert_eq!(
//!     lanes.send_to_user(manager, "hello", now),
//!     Ok(SendOutcome::Queued { queued_for: 1, closed_slow: 0 })
//! );
//! assert_eq!(lanes.poll_event(), Some(Event::ManagerCreated(manager)));
//! assert_eq!(lanes.poll_event(), Some(Event::Transmit(tab)));
//! assert_eq!(lanes.poll_transmit(tab), Ok(Some(Transmit::Message("hello"))));
//! assert_eq!(lanes.poll_transmit(tab), Ok(None));
//! assert_eq!(lanes.stats().security_violations_detected, 1);
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod close;
pub mod compat;
mod config;
mod context;
mod error;
mod event;
mod factory;
mod handle;
mod inbound;
mod index;
mod list;
mod log;
mod pool;
mod seam;
#[cfg(feature = "shim")]
pub mod shim;
mod stats;
mod time;

pub use close::{CloseCode, CloseFrame, CloseReason, InvalidCloseCode};
pub use config::{Capacity, Config, ConfigError, ConfigField, SlowConsumerPolicy};
pub use context::{
    ContextError, ContextField, Id, IdError, UserContext, MAX_ID_LEN, PLACEHOLDER_IDS,
};
pub use error::{Error, Limit, SendError, Violation};
pub use event::{Event, Released, SendOutcome, Transmit};
pub use factory::{GatewayFactory, ManagerFactory, ServerFactory};
pub use handle::{ConnectionHandle, ManagerHandle};
pub use inbound::{Inbound, InboundLimit, InboundLimits, Rate};
pub use index::SlotIndex;
pub use seam::{Creation, Lanes};
pub use stats::{ManagerStats, Stats};
pub use time::Instant;
