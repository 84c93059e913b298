//! `dyn Lanes<P>`: one view over factories of any capacity, and the one
//! lookup-or-create.

mod common;

use common::{ctx, t};
use userlane_core::{
    Capacity, Config, Creation, Error, GatewayFactory, Lanes, Limit, ManagerFactory, SendOutcome,
    Transmit,
};

type Wide = ManagerFactory<u16, 8, 16, 64, 8>;

/// Connects `user`, sends `payload` and drains it, through the view only.
fn round_trip(lanes: &mut dyn Lanes<u16>, user: &str, payload: u16) -> Vec<u16> {
    let now = lanes.now();
    let alice = ctx(user);
    let m = lanes
        .manager_or_create_with(user, || alice.clone(), now)
        .unwrap();
    let c = lanes.add_connection(m, &alice, now).unwrap();
    assert_eq!(
        lanes.send_to_user(m, payload, now),
        Ok(SendOutcome::Queued {
            queued_for: 1,
            closed_slow: 0
        })
    );
    let mut events = Vec::new();
    lanes.drain_events(&mut |e| events.push(e));
    assert_eq!(events.len(), 2, "{events:?}");
    let mut listed = Vec::new();
    assert_eq!(lanes.for_each_connection(m, &mut |c| listed.push(c)), Ok(1));
    assert_eq!(listed, [c]);
    let mut got = Vec::new();
    while let Ok(Some(Transmit::Message(p))) = lanes.poll_transmit(c) {
        got.push(p);
    }
    assert_eq!(lanes.poll_transmit(c), Ok(None));
    assert_eq!(lanes.handle_closed(c, now).map(|r| r.undelivered), Ok(0));
    assert_eq!(
        lanes.poll_transmit(c),
        Err(Error::UnknownConnection(c)),
        "gone"
    );
    got
}

#[test]
fn factories_of_different_capacities_share_one_view() {
    let mut gateway = GatewayFactory::new(Config::for_capacity(32, 128)).unwrap();
    let mut wide = Wide::new(Config::for_capacity(8, 16)).unwrap();
    let all: [&mut dyn Lanes<u16>; 2] = [&mut gateway, &mut wide];
    let caps: Vec<Capacity> = all.iter().map(|l| l.capacity()).collect();
    assert_eq!(caps[0], GatewayFactory::<u16>::CAPACITY);
    assert_eq!(caps[1].users, 8);
    assert_eq!(caps[1].slots, Wide::SLOTS);
    for (i, lanes) in all.into_iter().enumerate() {
        assert_eq!(round_trip(lanes, "alice", i as u16), [i as u16]);
        assert!(lanes.stats().is_consistent());
    }
}

#[test]
fn manager_or_create_builds_the_context_only_to_create() {
    let mut f = Wide::new(Config::for_capacity(8, 16)).unwrap();
    let mut built = 0;
    let mut make = || {
        built += 1;
        ctx("bob")
    };
    let first = f
        .as_lanes()
        .manager_or_create_with("bob", &mut make, t(0))
        .unwrap();
    let again = f
        .as_lanes()
        .manager_or_create_with("bob", &mut make, t(1))
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(built, 1);
    assert_eq!(f.stats().managers_created, 1);
}

#[test]
fn a_context_that_fails_to_build_creates_nothing() {
    let mut f = Wide::new(Config::for_capacity(8, 16)).unwrap();
    let lanes: &mut dyn Lanes<u16> = &mut f;
    let r = lanes.try_manager_or_create_with(
        "carol",
        || Err(Error::EventsPending),
        Creation::Live,
        t(0),
    );
    assert_eq!(r, Err(Error::EventsPending));
    assert_eq!(lanes.manager_for_user("carol"), None);
    assert_eq!(lanes.stats().managers_created, 0);
}

#[test]
fn the_offline_lookup_or_create_obeys_max_offline_managers() {
    let config = Config {
        max_offline_managers: 1,
        ..Config::for_capacity(8, 16)
    };
    let mut f = Wide::new(config).unwrap();
    let lanes: &mut dyn Lanes<u16> = &mut f;
    let make = |user: &'static str| move || Ok::<_, Error>(ctx(user));
    let offline = Creation::Offline;
    let a = lanes
        .try_manager_or_create_with("a", make("a"), offline, t(0))
        .unwrap();
    assert_eq!(
        lanes.try_manager_or_create_with("a", make("a"), offline, t(0)),
        Ok(a)
    );
    assert_eq!(
        lanes.try_manager_or_create_with("b", make("b"), offline, t(0)),
        Err(Error::LimitReached(Limit::OfflineManagers))
    );
}
