//! The seed corpus of the `state_machine` fuzz target: short, meaningful
//! operation sequences that together use every [`Op`] and reach every limit,
//! refusal, timer and close reason, so the fuzzer starts from the interesting
//! states instead of having to find them byte by byte.
//!
//! `cargo run -p userlane-tests --bin gen-corpus` writes them to
//! `fuzz/corpus/state_machine/`, and the [`external_seeds`] of the
//! `decode_external` target to `fuzz/corpus/decode_external/`;
//! `tests/fuzz_replay.rs` checks that the checked-in files match and replays
//! them.

use crate::ops::{ConnRef, MgrRef, Op};

fn m(user: u8) -> MgrRef {
    MgrRef::User { user, back: 0 }
}

fn old(user: u8, back: u8) -> MgrRef {
    MgrRef::User { user, back }
}

fn c(back: u8) -> ConnRef {
    ConnRef::Recent { back }
}

fn create(user: u8) -> Op {
    Op::CreateManager { user, variant: 0 }
}

fn add(user: u8) -> Op {
    Op::AddConnection {
        manager: m(user),
        claim: None,
    }
}

fn send(user: u8, tag: u8) -> Op {
    Op::Send {
        manager: m(user),
        tag,
    }
}

const DRAIN: Op = Op::Drain {
    close_sockets: true,
};

fn inbound(back: u8, bytes: u16) -> Op {
    Op::Inbound {
        conn: c(back),
        bytes,
    }
}

fn foreign(user: u8) -> MgrRef {
    MgrRef::Foreign { user, back: 0 }
}

/// Every command and query through handles of the other factory.
fn foreign_ops(own: u8) -> Vec<Op> {
    let fc = ConnRef::Foreign { back: 0 };
    vec![
        Op::Send {
            manager: foreign(0),
            tag: 9,
        },
        Op::AddConnection {
            manager: foreign(0),
            claim: None,
        },
        Op::Query {
            manager: foreign(0),
        },
        Op::CloseConnection {
            manager: foreign(0),
            conn: fc,
            code: 0,
        },
        Op::CloseConnection {
            manager: m(own),
            conn: fc,
            code: 0,
        },
        Op::RemoveConnection {
            manager: m(own),
            conn: fc,
        },
        Op::Activity { conn: fc },
        Op::Inbound { conn: fc, bytes: 1 },
        Op::PollTransmit { conn: fc },
        Op::HandleClosed { conn: fc },
        Op::Deactivate {
            manager: foreign(0),
        },
        DRAIN,
        Op::Query { manager: m(own) },
    ]
}

/// Every seed: a file name and its operations.
pub fn seeds() -> Vec<(&'static str, Vec<Op>)> {
    [
        seeds_1(),
        seeds_2(),
        seeds_3(),
        seeds_4(),
        seeds_5(),
        seeds_6(),
        seeds_7(),
        seeds_8(),
        seeds_9(),
    ]
    .concat()
}

/// Seeds, part 1 (in file order of [`seeds`]).
fn seeds_1() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "create-connect-send-drain",
            vec![
                create(0),
                Op::CreateManager {
                    user: 0,
                    variant: 1,
                },
                add(0),
                add(0),
                send(0, 1),
                send(0, 2),
                Op::PollEvent,
                Op::PollEvent,
                Op::PollTransmit { conn: c(0) },
                DRAIN,
                Op::Query { manager: m(0) },
            ],
        ),
        (
            "isolation-foreign-user-and-connection",
            vec![
                create(0),
                create(1),
                add(0),
                add(1),
                Op::AddConnection {
                    manager: m(0),
                    claim: Some(1),
                },
                Op::RemoveConnection {
                    manager: m(0),
                    conn: c(0),
                },
                Op::CloseConnection {
                    manager: m(0),
                    conn: c(0),
                    code: 0,
                },
                send(0, 10),
                send(1, 11),
                DRAIN,
            ],
        ),
        (
            "limits-per-user-total-and-users",
            vec![
                Op::Reset { profile: 0 },
                create(0),
                create(1),
                create(2),
                add(0),
                add(0),
                add(0),
                add(1),
                add(1),
                Op::RemoveConnection {
                    manager: m(0),
                    conn: c(2),
                },
                add(1),
            ],
        ),
    ]
}

/// Seeds, part 2 (in file order of [`seeds`]).
fn seeds_2() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "queue-full-reject-send",
            vec![
                create(0),
                add(0),
                add(0),
                send(0, 1),
                send(0, 2),
                send(0, 3),
                Op::PollTransmit { conn: c(1) },
                send(0, 4),
                DRAIN,
                send(0, 5),
            ],
        ),
        (
            "slow-consumer-closed-1013",
            vec![
                Op::Reset { profile: 1 },
                create(0),
                add(0),
                add(0),
                send(0, 1),
                send(0, 2),
                send(0, 3),
                Op::PollTransmit { conn: c(0) },
                send(0, 4),
                Op::PollEvent,
                Op::PollEvent,
                Op::PollEvent,
                Op::Drain {
                    close_sockets: false,
                },
                Op::HandleClosed { conn: c(1) },
                send(0, 5),
                Op::CloseAll { shutdown: false },
                send(0, 6),
            ],
        ),
        (
            "offline-buffer-replayed-in-order",
            vec![
                create(0),
                send(0, 1),
                send(0, 2),
                send(0, 3),
                add(0),
                send(0, 4),
                DRAIN,
                Op::Reset { profile: 1 },
                create(0),
                send(0, 5),
            ],
        ),
    ]
}

/// Seeds, part 3 (in file order of [`seeds`]).
fn seeds_3() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "shared-pool-exhausted",
            vec![
                Op::Reset { profile: 3 },
                create(0),
                add(0),
                add(0),
                add(0),
                add(0),
                send(0, 1),
                send(0, 2),
                send(0, 3),
                create(1),
                send(1, 4),
                add(1),
                send(1, 5),
                DRAIN,
                send(1, 6),
            ],
        ),
        (
            "deactivated-manager-and-stale-handles",
            vec![
                create(0),
                add(0),
                add(0),
                send(0, 1),
                Op::Deactivate { manager: m(0) },
                Op::Deactivate { manager: m(0) },
                add(0),
                send(0, 2),
                Op::RemoveConnection {
                    manager: m(0),
                    conn: c(0),
                },
                Op::CloseConnection {
                    manager: m(0),
                    conn: c(0),
                    code: 2,
                },
                Op::Query { manager: m(0) },
                create(0),
                Op::AddConnection {
                    manager: old(0, 1),
                    claim: None,
                },
                Op::RemoveConnection {
                    manager: m(0),
                    conn: c(0),
                },
                Op::Drain {
                    close_sockets: false,
                },
                Op::HandleClosed { conn: c(0) },
                Op::HandleClosed { conn: c(0) },
                Op::Activity { conn: c(1) },
                add(0),
                Op::PollTransmit { conn: c(1) },
            ],
        ),
    ]
}

/// Seeds, part 4 (in file order of [`seeds`]).
fn seeds_4() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "idle-timeout-and-activity",
            vec![
                create(0),
                add(0),
                add(0),
                Op::Advance { ms: 60 },
                Op::Activity { conn: c(1) },
                Op::Advance { ms: 50 },
                Op::FireTimer,
                DRAIN,
                Op::Activity { conn: c(0) },
                Op::FireTimer,
                Op::FireTimer,
                DRAIN,
                Op::FireTimer,
            ],
        ),
        (
            "empty-manager-reclaimed",
            vec![
                create(0),
                send(0, 1),
                Op::Advance { ms: 49 },
                Op::HandleTimeout,
                Op::Advance { ms: 1 },
                Op::HandleTimeout,
                Op::PollEvent,
                Op::PollEvent,
                send(0, 2),
                create(0),
                Op::Query { manager: old(0, 1) },
            ],
        ),
        (
            "events-pending-and-deferred-reclamation",
            vec![
                create(0),
                create(1),
                Op::Deactivate { manager: m(0) },
                create(2),
                Op::Advance { ms: 100 },
                Op::HandleTimeout,
                Op::PollEvent,
                Op::HandleTimeout,
                Op::PollEvent,
                Op::FireTimer,
                Op::PollEvent,
                Op::PollEvent,
                Op::FireTimer,
            ],
        ),
    ]
}

/// Seeds, part 5 (in file order of [`seeds`]).
fn seeds_5() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "close-all-shutdown-then-replay",
            vec![
                Op::Reset { profile: 3 },
                create(0),
                create(1),
                add(0),
                add(1),
                send(0, 1),
                Op::CloseAll { shutdown: true },
                send(0, 2),
                send(1, 3),
                DRAIN,
                add(0),
                DRAIN,
            ],
        ),
        (
            "application-close-twice",
            vec![
                create(0),
                add(0),
                send(0, 1),
                Op::CloseConnection {
                    manager: m(0),
                    conn: c(0),
                    code: 6,
                },
                Op::CloseConnection {
                    manager: m(0),
                    conn: c(0),
                    code: 1,
                },
                Op::Activity { conn: c(0) },
                send(0, 2),
                Op::PollTransmit { conn: c(0) },
                Op::PollTransmit { conn: c(0) },
                Op::PollTransmit { conn: c(0) },
                Op::PollEvent,
                Op::PollEvent,
                Op::PollEvent,
                Op::RemoveConnection {
                    manager: m(0),
                    conn: c(0),
                },
            ],
        ),
        (
            "clock-back-and-far-future",
            vec![
                Op::Advance { ms: 100 },
                create(0),
                Op::ClockBack { ms: 80 },
                add(0),
                Op::HandleTimeout,
                Op::FireTimer,
                Op::FarFuture,
                Op::Advance { ms: 5000 },
                add(0),
                Op::FireTimer,
                DRAIN,
                Op::FireTimer,
            ],
        ),
    ]
}

/// Seeds, part 6 (in file order of [`seeds`]).
fn seeds_6() -> Vec<(&'static str, Vec<Op>)> {
    vec![(
        "forged-handles",
        vec![
            create(0),
            add(0),
            Op::Send {
                manager: MgrRef::Forged {
                    index: 0,
                    generation: 1,
                },
                tag: 1,
            },
            Op::Send {
                manager: MgrRef::Forged {
                    index: 0,
                    generation: 0,
                },
                tag: 2,
            },
            Op::Deactivate {
                manager: MgrRef::Forged {
                    index: 200,
                    generation: 1,
                },
            },
            Op::AddConnection {
                manager: MgrRef::Forged {
                    index: 1,
                    generation: 1,
                },
                claim: Some(0),
            },
            Op::Activity {
                conn: ConnRef::Forged {
                    index: 0,
                    generation: 1,
                },
            },
            Op::HandleClosed {
                conn: ConnRef::Forged {
                    index: 3,
                    generation: 9,
                },
            },
            Op::PollTransmit {
                conn: ConnRef::Forged {
                    index: 0,
                    generation: 1,
                },
            },
            Op::Query {
                manager: MgrRef::Forged {
                    index: 2,
                    generation: 1,
                },
            },
        ],
    )]
}

/// Seeds, part 7 (in file order of [`seeds`]).
fn seeds_7() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "reclaimed-after-1-ms",
            vec![
                Op::Reset { profile: 2 },
                create(0),
                add(0),
                send(0, 1),
                Op::RemoveConnection {
                    manager: m(0),
                    conn: c(0),
                },
                Op::HandleTimeout,
                Op::Advance { ms: 1 },
                Op::HandleTimeout,
                Op::PollEvent,
                Op::PollEvent,
                create(0),
                send(0, 2),
                send(0, 3),
                Op::FireTimer,
            ],
        ),
        (
            "slot-reuse-refuses-stale-connection",
            vec![
                create(0),
                add(0),
                send(0, 1),
                Op::RemoveConnection {
                    manager: m(0),
                    conn: c(0),
                },
                add(0),
                Op::PollTransmit { conn: c(1) },
                Op::Activity { conn: c(1) },
                Op::HandleClosed { conn: c(1) },
                send(0, 2),
                DRAIN,
            ],
        ),
        (
            "hash-collisions-and-user-limit",
            vec![
                Op::Reset { profile: 1 },
                create(0),
                create(1),
                create(2),
                create(3),
                Op::Deactivate { manager: m(1) },
                create(3),
                Op::Deactivate { manager: m(0) },
                create(1),
                Op::Query { manager: m(2) },
                DRAIN,
            ],
        ),
    ]
}

/// Seeds, part 8 (in file order of [`seeds`]).
fn seeds_8() -> Vec<(&'static str, Vec<Op>)> {
    let mut two_factories = vec![create(0), add(0), send(0, 1), Op::Select { factory: 1 }];
    two_factories.extend([create(1), add(1), send(1, 2)]);
    two_factories.extend(foreign_ops(1));
    two_factories.push(Op::Select { factory: 0 });
    two_factories.extend(foreign_ops(0));
    vec![
        (
            "handle-closed-while-open-and-empty-again",
            vec![
                Op::Reset { profile: 3 },
                create(0),
                add(0),
                add(0),
                send(0, 1),
                Op::HandleClosed { conn: c(0) },
                Op::HandleClosed { conn: c(1) },
                send(0, 2),
                Op::Advance { ms: 299 },
                Op::FireTimer,
                Op::FireTimer,
                DRAIN,
            ],
        ),
        ("two-factories-foreign-handles", two_factories),
        (
            "inbound-budget-strikes-and-flood-close",
            vec![
                // Profile 0: 5 messages/s (bursts of 2) and 200 bytes/s
                // (bursts of 100) per connection, 8 messages/s (bursts of 3)
                // per user, closed at the third strike.
                create(0),
                add(0),
                send(0, 1),
                inbound(0, 10),
                inbound(0, 150),
                inbound(0, 10),
                Op::Advance { ms: 100 },
                inbound(0, 10),
                Op::Advance { ms: 100 },
                inbound(0, 10),
                inbound(0, 10),
                Op::Advance { ms: 120 },
                Op::Advance { ms: 120 },
                inbound(0, 10),
                inbound(0, 10),
                inbound(0, 10),
                inbound(0, 10),
                Op::PollEvent,
                inbound(0, 10),
                DRAIN,
                inbound(0, 10),
                // Profile 2: a user budget of 4 messages (2/s) shared by two
                // connections; 500 bytes per connection.
                Op::Reset { profile: 2 },
                create(0),
                add(0),
                add(0),
                inbound(0, 600),
                inbound(0, 1),
                inbound(1, 1),
                inbound(0, 1),
                inbound(1, 1),
                inbound(0, 1),
                inbound(1, 1),
                inbound(1, 1),
                Op::Advance { ms: 100 },
                Op::FireTimer,
                DRAIN,
                Op::Query { manager: m(0) },
            ],
        ),
    ]
}

/// Seeds, part 9 (in file order of [`seeds`]).
fn seeds_9() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "offline-managers-cap",
            vec![
                // Profile 2: 3 users, at most 2 of them without a connection
                // through create_offline_manager.
                Op::Reset { profile: 2 },
                Op::CreateOfflineManager {
                    user: 0,
                    variant: 0,
                },
                Op::CreateOfflineManager {
                    user: 1,
                    variant: 1,
                },
                Op::CreateOfflineManager {
                    user: 2,
                    variant: 0,
                },
                Op::CreateOfflineManager {
                    user: 0,
                    variant: 1,
                },
                create(2),
                add(0),
                Op::CreateOfflineManager {
                    user: 3,
                    variant: 0,
                },
                send(1, 3),
                DRAIN,
                Op::Query { manager: m(1) },
            ],
        ),
        (
            "send-to-connection-and-drain-events",
            send_to_connection_seed(),
        ),
    ]
}

fn to_conn(user: u8, back: u8, tag: u8) -> Op {
    Op::SendToConnection {
        manager: m(user),
        conn: c(back),
        tag,
    }
}

/// `send_to_connection` through every outcome (queued, foreign, full under
/// both policies, closing, dead manager) and `drain_events` between.
fn send_to_connection_seed() -> Vec<Op> {
    vec![
        Op::Reset { profile: 0 },
        create(0),
        add(0),
        create(1),
        add(1),
        Op::DrainEvents,
        to_conn(0, 1, 1),
        to_conn(0, 0, 2),
        to_conn(0, 1, 3),
        to_conn(0, 1, 4),
        Op::DrainEvents,
        Op::PollTransmit { conn: c(1) },
        Op::CloseConnection {
            manager: m(0),
            conn: c(1),
            code: 0,
        },
        to_conn(0, 1, 5),
        Op::DrainEvents,
        Op::Reset { profile: 1 },
        create(0),
        add(0),
        to_conn(0, 0, 6),
        to_conn(0, 0, 7),
        to_conn(0, 0, 8),
        to_conn(0, 0, 9),
        Op::DrainEvents,
        DRAIN,
        Op::Deactivate { manager: old(0, 0) },
        to_conn(0, 0, 10),
        Op::DrainEvents,
    ]
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("encodes")
}

/// Seeds of the `decode_external` target: one valid encoding of each
/// external type in each format, so mutations start from the decoders' inner
/// paths.
pub fn external_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use userlane_core::{CloseCode, CloseFrame, CloseReason, Config, UserContext};
    let ctx = UserContext::new("alice", "thread-1", "run-1", "req-1")
        .and_then(|c| c.with_connection_id("conn-1"))
        .expect("valid");
    let cfg = Config::for_capacity(3, 4);
    let close = CloseFrame::new(CloseCode::TRY_AGAIN_LATER, CloseReason::SlowConsumer);
    vec![
        ("context-json", json(&ctx)),
        (
            "context-postcard",
            postcard::to_allocvec(&ctx).expect("encodes"),
        ),
        ("config-json", json(&cfg)),
        (
            "config-postcard",
            postcard::to_allocvec(&cfg).expect("encodes"),
        ),
        ("close-code-json", b"1000".to_vec()),
        ("close-frame-json", json(&close)),
        (
            "handle-postcard",
            postcard::to_allocvec(&(0u32, 1u32, 0u32)).expect("encodes"),
        ),
        ("ops-postcard", crate::ops::encode(&seeds()[1].1)),
    ]
}
