//! The inbound budget: per-connection and per-user token buckets driven by
//! the caller's clock, all-or-nothing refusals, strikes and the 1008 close.

mod common;

use common::{ctx, events, lanes_with, small_config, t, transmits, Lanes};
use userlane_core::{
    CloseCode, CloseFrame, CloseReason, Config, ConnectionHandle, Error, Event, Inbound,
    InboundLimit, InboundLimits, ManagerHandle, Rate, Transmit,
};

const FLOOD: CloseFrame = CloseFrame::new(CloseCode::POLICY_VIOLATION, CloseReason::InboundFlood);

fn limits(messages: Option<(u32, u32)>, bytes: Option<(u32, u32)>) -> InboundLimits {
    InboundLimits {
        messages: messages.map(|(r, b)| Rate::new(r, b)),
        bytes: bytes.map(|(r, b)| Rate::new(r, b)),
    }
}

fn config(conn: InboundLimits, user: InboundLimits, strikes: u32) -> Config {
    Config {
        inbound_per_connection: conn,
        inbound_per_user: user,
        inbound_strikes: strikes,
        idle_timeout_ms: None,
        ..small_config()
    }
}

fn connect(f: &mut Lanes, user: &str) -> (ManagerHandle, ConnectionHandle) {
    let m = f.create_manager(ctx(user), t(0)).unwrap();
    let c = f.add_connection(m, &ctx(user), t(0)).unwrap();
    (m, c)
}

#[test]
fn a_bucket_refills_with_the_callers_clock_up_to_its_burst() {
    let mut f = lanes_with(config(
        limits(Some((10, 3)), None),
        InboundLimits::UNLIMITED,
        1_000,
    ));
    let (_, c) = connect(&mut f, "alice");
    // A full bucket: three at once, the fourth is refused.
    for _ in 0..3 {
        assert_eq!(f.handle_inbound(c, 10, t(0)), Ok(Inbound::Accepted));
    }
    let over = Inbound::Refused(InboundLimit::ConnectionMessages);
    assert_eq!(f.handle_inbound(c, 10, t(0)), Ok(over));
    // 10 a second: one more every 100 ms, never a fraction early.
    assert_eq!(f.handle_inbound(c, 10, t(99)), Ok(over));
    assert_eq!(f.handle_inbound(c, 10, t(100)), Ok(Inbound::Accepted));
    assert_eq!(f.handle_inbound(c, 10, t(150)), Ok(over));
    // Frequent calls lose no fraction: the next token is due at 200 ms.
    assert_eq!(f.handle_inbound(c, 10, t(180)), Ok(over));
    assert_eq!(f.handle_inbound(c, 10, t(199)), Ok(over));
    assert_eq!(f.handle_inbound(c, 10, t(200)), Ok(Inbound::Accepted));
    // A long pause refills only up to the burst.
    for _ in 0..3 {
        assert_eq!(f.handle_inbound(c, 10, t(60_000)), Ok(Inbound::Accepted));
    }
    assert_eq!(f.handle_inbound(c, 10, t(60_000)), Ok(over));
    let s = f.stats();
    assert_eq!(s.inbound_accepted, 8);
    assert_eq!(s.inbound_refused_connection_messages, 6);
    assert!(s.is_consistent());
}

#[test]
fn a_refused_message_takes_nothing_from_any_bucket() {
    // The connection allows 100 bytes, the user 10 messages: a 60-byte
    // message fits the user's message bucket but not, the second time, the
    // connection's byte bucket; nothing of it is taken anywhere.
    let mut f = lanes_with(config(
        limits(Some((1, 10)), Some((1, 100))),
        limits(Some((1, 3)), Some((1, 1_000))),
        1_000,
    ));
    let (m, c) = connect(&mut f, "alice");
    let c2 = f.add_connection(m, &ctx("alice"), t(0)).unwrap();
    assert_eq!(f.handle_inbound(c, 60, t(0)), Ok(Inbound::Accepted));
    assert_eq!(
        f.handle_inbound(c, 60, t(0)),
        Ok(Inbound::Refused(InboundLimit::ConnectionBytes))
    );
    // Had the refused message taken a user message token, only one would
    // be left for the second connection.
    assert_eq!(f.handle_inbound(c2, 1, t(0)), Ok(Inbound::Accepted));
    assert_eq!(f.handle_inbound(c2, 1, t(0)), Ok(Inbound::Accepted));
    assert_eq!(
        f.handle_inbound(c2, 1, t(0)),
        Ok(Inbound::Refused(InboundLimit::UserMessages))
    );
    // And the refused 60 bytes were not taken from the connection's bytes:
    // 40 still fit.
    assert_eq!(
        f.handle_inbound(c, 40, t(1_000)),
        Ok(Inbound::Accepted),
        "one user message token refilled after a second, 41 connection bytes left"
    );
    // A message larger than a byte burst never fits.
    assert_eq!(
        f.handle_inbound(c, 101, t(3_600_000)),
        Ok(Inbound::Refused(InboundLimit::ConnectionBytes))
    );
    let s = f.stats();
    assert_eq!(
        (
            s.inbound_accepted,
            s.inbound_refused_connection_bytes,
            s.inbound_refused_user_messages
        ),
        (4, 2, 1)
    );
}

#[test]
fn the_user_budget_is_shared_by_its_connections_and_no_one_elses() {
    let mut f = lanes_with(config(
        InboundLimits::UNLIMITED,
        limits(Some((1, 4)), Some((1, 1_000))),
        1_000,
    ));
    let (m, a1) = connect(&mut f, "alice");
    let a2 = f.add_connection(m, &ctx("alice"), t(0)).unwrap();
    let (_, b1) = connect(&mut f, "bob");
    for c in [a1, a2, a1, a2] {
        assert_eq!(f.handle_inbound(c, 1, t(0)), Ok(Inbound::Accepted));
    }
    let over = Ok(Inbound::Refused(InboundLimit::UserMessages));
    assert_eq!(f.handle_inbound(a1, 1, t(0)), over);
    assert_eq!(f.handle_inbound(a2, 1, t(0)), over);
    // Bob has his own budget.
    for _ in 0..4 {
        assert_eq!(f.handle_inbound(b1, 1, t(0)), Ok(Inbound::Accepted));
    }
    // The user's bytes too: 1,000 shared, one more a second.
    assert_eq!(f.handle_inbound(b1, 600, t(1_000)), Ok(Inbound::Accepted));
    assert_eq!(
        f.handle_inbound(b1, 600, t(2_000)),
        Ok(Inbound::Refused(InboundLimit::UserBytes))
    );
    // Alice's budget keeps refilling while she has no connection, and a new
    // connection does not start her over.
    f.remove_connection(m, a1, t(1_000)).unwrap();
    f.remove_connection(m, a2, t(1_000)).unwrap();
    let a3 = f.add_connection(m, &ctx("alice"), t(3_000)).unwrap();
    for _ in 0..3 {
        assert_eq!(f.handle_inbound(a3, 1, t(3_000)), Ok(Inbound::Accepted));
    }
    assert_eq!(f.handle_inbound(a3, 1, t(3_000)), over);
}

#[test]
fn a_connection_that_keeps_flooding_is_closed_with_1008_after_its_queue() {
    let mut f = lanes_with(config(
        limits(Some((10, 5)), None),
        InboundLimits::UNLIMITED,
        3,
    ));
    let (m, c) = connect(&mut f, "alice");
    f.send_to_user(m, 1, t(0)).unwrap();
    f.send_to_user(m, 2, t(0)).unwrap();
    events(&mut f);
    for _ in 0..5 {
        assert_eq!(f.handle_inbound(c, 1, t(0)), Ok(Inbound::Accepted));
    }
    let over = InboundLimit::ConnectionMessages;
    assert_eq!(f.handle_inbound(c, 1, t(0)), Ok(Inbound::Refused(over)));
    assert_eq!(f.handle_inbound(c, 1, t(0)), Ok(Inbound::Refused(over)));
    assert_eq!(f.handle_inbound(c, 1, t(0)), Ok(Inbound::Closed(over)));
    assert!(!f.is_open(c));
    assert_eq!(
        events(&mut f),
        [Event::ConnectionClosed {
            connection: c,
            manager: m,
            close: FLOOD
        }]
    );
    assert_eq!(
        transmits(&mut f, c),
        [
            Transmit::Message(1),
            Transmit::Message(2),
            Transmit::Close(FLOOD)
        ]
    );
    assert_eq!(FLOOD.reason.as_str(), "inbound rate limit exceeded");
    assert_eq!(FLOOD.code.as_u16(), 1008);
    // A closing connection takes no inbound message.
    assert_eq!(
        f.handle_inbound(c, 1, t(10)),
        Err(Error::ConnectionClosing(c))
    );
    let s = f.stats();
    assert_eq!(s.closed_inbound_flood, 1);
    assert_eq!(s.rejected_closing_connection, 1);
    assert_eq!(s.connections_closed(), 1);
    assert!(s.is_consistent());
    f.handle_closed(c, t(10)).unwrap();
    assert_eq!(
        f.handle_inbound(c, 1, t(10)),
        Err(Error::UnknownConnection(c))
    );
}

#[test]
fn twice_the_rate_is_closed_within_seconds_one_overshoot_is_not() {
    // The documented defaults: 100 messages/s, bursts of 200, 64 strikes.
    let mut f = lanes_with(Config {
        inbound_per_connection: Config::for_capacity(4, 8).inbound_per_connection,
        inbound_per_user: Config::for_capacity(4, 8).inbound_per_user,
        inbound_strikes: Config::for_capacity(4, 8).inbound_strikes,
        idle_timeout_ms: None,
        ..small_config()
    });
    let (m, flooder) = connect(&mut f, "alice");
    let polite = f.add_connection(m, &ctx("alice"), t(0)).unwrap();
    // The flooder sends 200 messages a second (one every 5 ms).
    let mut closed_at = None;
    for i in 0..2_000u64 {
        match f.handle_inbound(flooder, 100, t(i * 5)).unwrap() {
            Inbound::Closed(InboundLimit::ConnectionMessages) => {
                closed_at = Some(i * 5);
                break;
            }
            Inbound::Closed(other) => panic!("closed by {other:?}"),
            _ => {}
        }
    }
    let closed_at = closed_at.expect("a 2x flood is closed");
    assert!(
        (2_000..=4_000).contains(&closed_at),
        "closed after {closed_at} ms"
    );
    // The polite one overshoots its burst once by 50 messages, then keeps
    // to 50 a second for a minute: never closed.
    let mut refused = 0;
    for _ in 0..250 {
        if f.handle_inbound(polite, 100, t(closed_at)).unwrap() != Inbound::Accepted {
            refused += 1;
        }
    }
    assert_eq!(refused, 50);
    for i in 1..=3_000u64 {
        assert_eq!(
            f.handle_inbound(polite, 100, t(closed_at + i * 20)),
            Ok(Inbound::Accepted)
        );
    }
    assert!(f.is_open(polite));
    assert_eq!(f.stats().closed_inbound_flood, 1);
}

#[test]
fn strikes_are_forgiven_one_per_second_not_by_one_good_message() {
    let mut f = lanes_with(config(
        limits(Some((1, 1)), None),
        InboundLimits::UNLIMITED,
        3,
    ));
    let (_, c) = connect(&mut f, "alice");
    let over = Ok(Inbound::Refused(InboundLimit::ConnectionMessages));
    assert_eq!(f.handle_inbound(c, 0, t(0)), Ok(Inbound::Accepted));
    // Strikes 1 and 2.
    assert_eq!(f.handle_inbound(c, 0, t(0)), over);
    assert_eq!(f.handle_inbound(c, 0, t(10)), over);
    // One second later: a strike forgiven and a token refilled; the
    // accepted message does not wipe the other strike.
    assert_eq!(f.handle_inbound(c, 0, t(1_000)), Ok(Inbound::Accepted));
    assert_eq!(f.handle_inbound(c, 0, t(1_000)), over);
    assert_eq!(
        f.handle_inbound(c, 0, t(1_001)),
        Ok(Inbound::Closed(InboundLimit::ConnectionMessages))
    );
}

#[test]
fn an_accepted_message_is_activity_and_unlimited_budgets_accept_everything() {
    let mut f = lanes_with(Config {
        idle_timeout_ms: Some(1_000),
        inbound_per_connection: InboundLimits::UNLIMITED,
        inbound_per_user: InboundLimits::UNLIMITED,
        ..small_config()
    });
    let (_, c) = connect(&mut f, "alice");
    for i in 0..100 {
        assert_eq!(
            f.handle_inbound(c, usize::MAX, t(i * 900)),
            Ok(Inbound::Accepted)
        );
    }
    assert_eq!(f.poll_timeout(), Some(t(99 * 900 + 1_000)));
    f.handle_timeout(t(99 * 900 + 999));
    assert!(f.is_open(c));
}
