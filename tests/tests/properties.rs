//! Property tests: random operation sequences, shrunk by proptest, applied
//! to the core and to the one reference model (`userlane_tests::model`, the
//! fuzzer's) through the harness, on two factories of each configuration
//! profile (`u16` and `u32` links, both slow-consumer policies, timers on and
//! off). After every step the harness compares every result, event,
//! transmit, query and stat with the model and checks the invariants:
//! isolation, per-connection order, limits, the pool balance. Each case
//! ends with a full drain: everything accepted is then either transmitted
//! or counted as dropped, and no connection is left closing.

use proptest::prelude::*;
use userlane_tests::harness::Harness;
use userlane_tests::ops::{MgrRef, Op, Rng};

/// One operation: mostly drawn by the fuzzer's weighted generator from a
/// seed, with extra sends to a user's newest manager, so the shared pool and
/// the offline buffers fill up between drains.
fn op() -> impl Strategy<Value = Op> {
    let send = (0u8..4, any::<u8>()).prop_map(|(user, tag)| Op::Send {
        manager: MgrRef::User { user, back: 0 },
        tag,
    });
    prop_oneof![
        3 => any::<u64>().prop_map(|seed| Rng::new(seed).op()),
        1 => send,
    ]
}

/// Sequences of up to `max` operations.
fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..max)
}

/// Applies `ops`, then the full drain; the first divergence, if any.
fn run(ops: &[Op]) -> Result<(), String> {
    let mut h = Harness::new();
    h.check()?;
    for (step, op) in ops.iter().enumerate() {
        h.apply(op)
            .and_then(|()| h.check())
            .map_err(|what| format!("step {step}, {op:?}: {what}"))?;
    }
    h.drain_all().map_err(|what| format!("final drain: {what}"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_agree_with_the_model_and_keep_every_invariant(
        ops in ops(160),
    ) {
        if let Err(failure) = run(&ops) {
            prop_assert!(false, "{}", failure);
        }
    }
}

/// The generator reaches every refusal, close reason and the two new sends
/// often enough to matter (guards against a generator that silently stops
/// exercising them).
#[test]
fn the_generator_reaches_every_refusal() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut total = userlane_tests::harness::Coverage::default();
    for _ in 0..256 {
        let ops = ops(160).new_tree(&mut runner).unwrap().current();
        let cov = userlane_tests::harness::run(&ops).unwrap_or_else(|f| panic!("{f}"));
        total.merge(&cov);
    }
    for (call, outcome) in [
        ("add_connection", "Err(LimitReached(ConnectionsPerUser))"),
        ("add_connection", "Err(LimitReached(Connections))"),
        ("add_connection", "Err(IsolationViolation(ForeignUser))"),
        ("create_manager", "Err(LimitReached(Users))"),
        ("send_to_user", "Err(QueueFull)"),
        ("send_to_user", "Err(LimitReached(QueueSlots))"),
        ("send_to_user", "Err(LimitReached(OfflineBuffer))"),
        ("send_to_user", "Err(NoConnections)"),
        ("send_to_user", "Err(ManagerInactive)"),
        ("send_to_user", "Ok(Queued, closed slow)"),
        ("send_to_connection", "Ok(Queued)"),
        ("send_to_connection", "Err(QueueFull)"),
        ("send_to_connection", "Err(ConnectionClosing)"),
        (
            "send_to_connection",
            "Err(IsolationViolation(ForeignConnection))",
        ),
        ("drain_events", "Some"),
        ("create_manager", "Err(EventsPending)"),
        ("handle_closed", "Err(UnknownConnection)"),
        ("close_connection", "Err(ConnectionClosing)"),
        ("send_to_user", "Ok(Buffered)"),
        ("poll_event", "ConnectionClosed(IdleTimeout)"),
        ("poll_event", "ConnectionClosed(SlowConsumer)"),
        ("poll_event", "ManagerReclaimed"),
        ("poll_transmit", "Message"),
        ("poll_transmit", "Close"),
    ] {
        assert!(
            total.count(call, outcome) > 0,
            "the generator never reaches {call} -> {outcome}"
        );
    }
}
