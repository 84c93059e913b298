//! The fuzzer's checks on the stable toolchain: every checked-in corpus entry
//! of the `state_machine` target is replayed against the core and the model,
//! and a fixed-seed random campaign runs the same harness.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use userlane_tests::harness::{run, Coverage, Harness};
use userlane_tests::ops::{decode, decode_lenient, encode, Op, Rng, OP_KINDS};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/state_machine")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("the seed corpus is checked in under fuzz/corpus/state_machine")
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// The `(call, outcome)` pairs the seed corpus must reach: every refusal,
/// close reason and send outcome.
const SEEDS_REACH: [(&str, &str); 42] = [
    ("add_connection", "Err(IsolationViolation(ForeignUser))"),
    (
        "remove_connection",
        "Err(IsolationViolation(ForeignConnection))",
    ),
    ("add_connection", "Err(LimitReached(ConnectionsPerUser))"),
    ("add_connection", "Err(LimitReached(Connections))"),
    ("create_manager", "Err(LimitReached(Users))"),
    ("create_manager", "Err(EventsPending)"),
    ("deactivate", "Err(EventsPending)"),
    ("send_to_user", "Err(QueueFull)"),
    ("send_to_user", "Err(LimitReached(QueueSlots))"),
    ("send_to_user", "Err(LimitReached(OfflineBuffer))"),
    ("send_to_user", "Err(NoConnections)"),
    ("send_to_user", "Err(ManagerInactive)"),
    ("send_to_user", "Err(UnknownManager)"),
    ("send_to_user", "Ok(Buffered)"),
    ("send_to_user", "Ok(Queued, closed slow)"),
    ("close_connection", "Err(ConnectionClosing)"),
    ("handle_closed", "Err(UnknownConnection)"),
    ("poll_event", "ConnectionClosed(IdleTimeout)"),
    ("poll_event", "ConnectionClosed(SlowConsumer)"),
    ("poll_event", "ConnectionClosed(ManagerDeactivated)"),
    ("poll_event", "ConnectionClosed(Application)"),
    ("poll_event", "ConnectionClosed(ServerShutdown)"),
    ("poll_event", "ManagerReclaimed"),
    ("poll_event", "ManagerDeactivated"),
    ("poll_transmit", "Close"),
    ("handle_inbound", "Accepted"),
    ("handle_inbound", "Refused"),
    ("handle_inbound", "Closed"),
    ("handle_inbound", "Err(ConnectionClosing)"),
    ("handle_inbound", "Err(UnknownConnection)"),
    ("poll_event", "ConnectionClosed(InboundFlood)"),
    ("create_offline_manager", "Ok"),
    (
        "create_offline_manager",
        "Err(LimitReached(OfflineManagers))",
    ),
    ("deactivate", "Err(UnknownManager)"),
    ("handle_activity", "Err(UnknownConnection)"),
    ("send_to_connection", "Ok(Queued)"),
    ("send_to_connection", "Ok(Queued, closed slow)"),
    (
        "send_to_connection",
        "Err(IsolationViolation(ForeignConnection))",
    ),
    ("send_to_connection", "Err(QueueFull)"),
    ("send_to_connection", "Err(ConnectionClosing)"),
    ("send_to_connection", "Err(ManagerInactive)"),
    ("drain_events", "Some"),
];

#[test]
fn every_corpus_entry_replays_clean_and_every_op_is_covered() {
    let files = corpus();
    let seeds = userlane_tests::corpus::seeds();
    assert!(
        files.len() >= seeds.len(),
        "{} files for {} seeds",
        files.len(),
        seeds.len()
    );
    let mut kinds = BTreeSet::new();
    let mut total = Coverage::default();
    // Every file is replayed as the fuzz target reads it (entries a local
    // `cargo fuzz run` added may hold a corrupted tail); the seeds must be
    // complete sequences.
    for (name, bytes) in &files {
        let ops = decode_lenient(bytes);
        if seeds.iter().any(|(seed, _)| seed == name) {
            let strict =
                decode(bytes).unwrap_or_else(|e| panic!("{name} is not a postcard Vec<Op>: {e}"));
            assert_eq!(strict, ops, "{name}: lenient decoding differs");
        }
        kinds.extend(ops.iter().map(Op::kind));
        let cov = run(&ops).unwrap_or_else(|f| panic!("{name}: {f}"));
        total.merge(&cov);
    }
    let all: BTreeSet<&str> = OP_KINDS.into_iter().collect();
    assert_eq!(kinds, all, "the corpus must use every operation");
    // The seeds reach every refusal and every close reason.
    for (call, outcome) in SEEDS_REACH {
        assert!(
            total.count(call, outcome) > 0,
            "no seed reaches {call} -> {outcome}"
        );
    }
}

#[test]
fn checked_in_corpus_matches_the_seed_definitions() {
    let files = corpus();
    for (name, ops) in userlane_tests::corpus::seeds() {
        let file = files.iter().find(|(f, _)| f == name).unwrap_or_else(|| {
            panic!("seed {name} missing: run `cargo run -p userlane-tests --bin gen-corpus`")
        });
        assert_eq!(
            file.1,
            encode(&ops),
            "seed {name} is stale: run `cargo run -p userlane-tests --bin gen-corpus`"
        );
    }
}

#[test]
fn operations_round_trip_through_postcard_and_truncation_keeps_a_prefix() {
    let mut rng = Rng::new(7);
    for _ in 0..200 {
        let ops = rng.ops(40);
        let bytes = encode(&ops);
        assert_eq!(decode(&bytes).unwrap(), ops);
        // A truncated input decodes to a prefix of the sequence.
        let cut = bytes.len() / 2;
        let prefix = decode_lenient(&bytes[..cut]);
        assert!(prefix.len() < ops.len());
        assert_eq!(prefix[..], ops[..prefix.len()]);
    }
    // Nothing at all, or a length with no operations, is an empty sequence.
    assert_eq!(decode_lenient(&[]), Vec::<Op>::new());
    assert_eq!(decode_lenient(&[5]), Vec::<Op>::new());
}

/// Sequences and their length in the fixed-seed campaign: 60,400 operations,
/// each followed by the full comparison, a few seconds in a debug build.
const CAMPAIGN_RUNS: u64 = 400;
const CAMPAIGN_LEN: usize = 150;

#[test]
fn fixed_seed_random_campaign_agrees_with_the_model() {
    let started = Instant::now();
    let mut total = Coverage::default();
    for seed in 0..CAMPAIGN_RUNS {
        let mut rng = Rng::new(0x5EED_0000 + seed);
        let mut ops = vec![Op::Reset {
            profile: (seed % 4) as u8,
        }];
        ops.extend(rng.ops(CAMPAIGN_LEN));
        let mut h = Harness::new();
        for (step, op) in ops.iter().enumerate() {
            if let Err(what) = h.apply(op).and_then(|()| h.check()) {
                panic!(
                    "seed {seed}, step {step} ({op:?}): {what}\nreplay: {:?}",
                    encode(&ops[..=step])
                );
            }
        }
        total.merge(h.coverage());
    }
    println!(
        "{} operations ({} skipped) in {:?}",
        total.ops,
        total.skipped,
        started.elapsed()
    );
    assert_eq!(total.ops, CAMPAIGN_RUNS * (CAMPAIGN_LEN as u64 + 1));
    // Operations naming a user that never had a manager, or a connection
    // before any was opened, are skipped; most must not be.
    assert!(total.skipped * 3 < total.ops, "too many skipped: {total:?}");
    // The campaign is only worth its time if it reaches the edges.
    for (call, outcome) in [
        ("create_manager", "Err(LimitReached(Users))"),
        ("create_manager", "Err(EventsPending)"),
        ("add_connection", "Err(IsolationViolation(ForeignUser))"),
        ("add_connection", "Err(LimitReached(ConnectionsPerUser))"),
        ("add_connection", "Err(LimitReached(Connections))"),
        ("add_connection", "Err(ManagerInactive)"),
        (
            "remove_connection",
            "Err(IsolationViolation(ForeignConnection))",
        ),
        ("remove_connection", "Ok"),
        ("close_connection", "Err(ConnectionClosing)"),
        ("send_to_user", "Err(QueueFull)"),
        ("send_to_user", "Err(LimitReached(QueueSlots))"),
        ("send_to_user", "Err(LimitReached(OfflineBuffer))"),
        ("send_to_user", "Err(NoConnections)"),
        ("send_to_user", "Ok(Buffered)"),
        ("send_to_user", "Ok(Queued, closed slow)"),
        ("deactivate", "Err(EventsPending)"),
        ("deactivate", "Ok"),
        ("handle_activity", "Ok"),
        ("handle_closed", "Ok"),
        ("poll_event", "ConnectionClosed(IdleTimeout)"),
        ("poll_event", "ConnectionClosed(SlowConsumer)"),
        ("poll_event", "ConnectionClosed(ManagerDeactivated)"),
        ("poll_event", "ConnectionClosed(Application)"),
        ("poll_event", "ConnectionClosed(ServerShutdown)"),
        ("poll_event", "ManagerReclaimed"),
        ("poll_transmit", "Message"),
        ("poll_transmit", "Close"),
        ("handle_inbound", "Accepted"),
        ("handle_inbound", "Refused"),
        ("handle_inbound", "Closed"),
        ("poll_event", "ConnectionClosed(InboundFlood)"),
        (
            "create_offline_manager",
            "Err(LimitReached(OfflineManagers))",
        ),
        ("send_to_user", "Err(UnknownManager)"),
    ] {
        assert!(
            total.count(call, outcome) > 0,
            "the campaign never reached {call} -> {outcome}"
        );
    }
}

#[test]
fn decode_external_seeds_are_checked_in_and_pass() {
    let dir = corpus_dir().join("../decode_external");
    for (name, bytes) in userlane_tests::corpus::external_seeds() {
        let file = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!("decode_external seed {name}: {e}; run `cargo run -p userlane-tests --bin gen-corpus`")
        });
        assert_eq!(file, bytes, "decode_external seed {name} is stale");
        userlane_tests::external::check(&bytes);
    }
}

#[test]
fn external_decoders_accept_only_valid_values() {
    use userlane_core::{CloseCode, Config, UserContext};
    let ctx = UserContext::new("alice", "t", "r", "q")
        .unwrap()
        .with_connection_id("c1")
        .unwrap();
    let good: Vec<Vec<u8>> = vec![
        postcard::to_allocvec(&ctx).unwrap(),
        serde_json::to_vec(&ctx).unwrap(),
        serde_json::to_vec(&Config::for_capacity(3, 4)).unwrap(),
        postcard::to_allocvec(&Config::for_capacity(3, 4)).unwrap(),
        serde_json::to_vec(&CloseCode::TRY_AGAIN_LATER).unwrap(),
        encode(&userlane_tests::corpus::seeds()[0].1),
    ];
    for input in &good {
        userlane_tests::external::check(input);
    }
    // Invalid values are refused at decoding, never built.
    let bad_json: [&str; 6] = [
        r#"{"user_id":"null","thread_id":"t","run_id":"r","request_id":"q"}"#,
        r#"{"user_id":" ","thread_id":"t","run_id":"r","request_id":"q"}"#,
        r#"{"user_id":"a","thread_id":"t\u0000","run_id":"r","request_id":"q"}"#,
        r#"{"user_id":"a","thread_id":"t","run_id":"registry","request_id":"q"}"#,
        r#"{"user_id":"a","thread_id":"t","run_id":"r","request_id":"q","connection_id":""}"#,
        "1006",
    ];
    for input in bad_json {
        assert!(
            serde_json::from_str::<UserContext>(input).is_err(),
            "{input}"
        );
        userlane_tests::external::check(input.as_bytes());
    }
    assert!(serde_json::from_str::<CloseCode>("1006").is_err());
    assert!(serde_json::from_str::<CloseCode>("401").is_err());
    // A config out of range decodes (limits are checked against the
    // capacities of a factory) and the factory refuses it.
    let over = r#"{"max_users":9,"max_connections_per_user":1,"max_connections":1,"queue_depth":1,
        "offline_buffer":0,"slow_consumer":"RejectSend","idle_timeout_ms":null,
        "empty_manager_ttl_ms":null,"hash_seed":0,"factory_tag":0,"max_offline_managers":0,
        "inbound_per_connection":{"messages":null,"bytes":null},
        "inbound_per_user":{"messages":{"per_second":0,"burst":1},"bytes":null},
        "inbound_strikes":1}"#;
    let cfg: Config = serde_json::from_str(over).unwrap();
    assert!(cfg
        .validate(userlane_core::Capacity {
            users: 3,
            connections: 4,
            slots: 6,
            events: 4,
        })
        .is_err());
    userlane_tests::external::check(over.as_bytes());
    // Random bytes, and mutations of the valid inputs.
    let mut rng = Rng::new(99);
    for i in 0..3_000 {
        let mut input = good[i % good.len()].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(input.len() as u32) as usize;
            input[at] = rng.byte();
        }
        userlane_tests::external::check(&input);
        let noise: Vec<u8> = (0..rng.below(40)).map(|_| rng.byte()).collect();
        userlane_tests::external::check(&noise);
    }
}
