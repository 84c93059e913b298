//! Handles carry the tag of the factory that issued them: a handle of one
//! factory never reaches the manager or connection in the same slot of
//! another.

mod common;

use common::{ctx, events, lanes_with, small_config, t, transmits, Lanes};
use userlane_core::{CloseCode, Config, Error, Event, Inbound, Transmit};

fn tagged(tag: u32) -> Lanes {
    lanes_with(Config {
        factory_tag: tag,
        ..small_config()
    })
}

#[test]
fn a_handle_of_another_factory_is_refused_by_every_command_and_query() {
    let mut a = tagged(1);
    let mut b = tagged(2);
    let alice = a.create_manager(ctx("alice"), t(0)).unwrap();
    let alice_tab = a.add_connection(alice, &ctx("alice"), t(0)).unwrap();
    let bob = b.create_manager(ctx("bob"), t(0)).unwrap();
    let bob_tab = b.add_connection(bob, &ctx("bob"), t(0)).unwrap();
    events(&mut b);
    // Same slot, same generation: only the tag tells them apart.
    assert_eq!(
        (alice.index(), alice.generation()),
        (bob.index(), bob.generation())
    );
    assert_eq!(
        (alice_tab.index(), alice_tab.generation()),
        (bob_tab.index(), bob_tab.generation())
    );
    assert_eq!((alice.factory_tag(), bob.factory_tag()), (1, 2));
    assert_eq!((alice_tab.factory_tag(), bob_tab.factory_tag()), (1, 2));
    assert_ne!(alice, bob);

    let m = Error::UnknownManager(alice);
    let c = Error::UnknownConnection(alice_tab);
    assert_eq!(b.send_to_user(alice, 7, t(1)).map_err(Error::from), Err(m));
    assert_eq!(
        b.send_to_connection(alice, alice_tab, 7, t(1))
            .map_err(Error::from),
        Err(m)
    );
    // Through bob's own manager, alice's connection handle is still unknown.
    assert_eq!(
        b.send_to_connection(bob, alice_tab, 7, t(1))
            .map_err(Error::from),
        Err(c)
    );
    assert_eq!(b.add_connection(alice, &ctx("bob"), t(1)), Err(m));
    assert_eq!(b.context(alice), Err(m));
    assert_eq!(b.connections(alice).err(), Some(m));
    assert_eq!(b.connection_count(alice), Err(m));
    assert_eq!(b.manager_stats(alice), Err(m));
    assert_eq!(b.empty_since(alice), Err(m));
    assert!(!b.is_active(alice));
    assert_eq!(
        b.close_connection(alice, alice_tab, CloseCode::NORMAL, t(1)),
        Err(m)
    );
    assert_eq!(
        b.close_connection(bob, alice_tab, CloseCode::NORMAL, t(1)),
        Err(c)
    );
    assert_eq!(b.remove_connection(bob, alice_tab, t(1)), Err(c));
    assert_eq!(b.deactivate(alice, t(1)), Err(m));
    assert_eq!(b.handle_activity(alice_tab, t(1)), Err(c));
    assert_eq!(b.handle_inbound(alice_tab, 1, t(1)), Err(c));
    assert_eq!(b.owner_of(alice_tab), Err(c));
    assert_eq!(b.queued(alice_tab), Err(c));
    assert!(!b.is_open(alice_tab));
    assert_eq!(
        b.poll_transmit(alice_tab),
        Err(Error::UnknownConnection(alice_tab))
    );
    assert_eq!(b.handle_closed(alice_tab, t(1)), Err(c));

    // Bob got nothing, lost nothing, and is still there.
    assert_eq!(events(&mut b), []);
    assert_eq!(transmits(&mut b, bob_tab), []);
    assert!(b.is_open(bob_tab) && b.is_active(bob));
    assert_eq!(b.context(bob).unwrap().user_id(), "bob");
    let s = b.stats();
    // Every command counted the refusal (queries and polls read only).
    assert_eq!(s.rejected_unknown_handle, 11);
    assert_eq!((s.sends_accepted, s.messages_queued), (0, 0));
    assert_eq!(s.security_violations_detected, 0);
    assert!(s.is_consistent());

    // The handles keep working on the factory that issued them.
    assert_eq!(a.handle_inbound(alice_tab, 1, t(1)), Ok(Inbound::Accepted));
    a.send_to_user(alice, 9, t(1)).unwrap();
    assert_eq!(
        events(&mut a),
        [Event::ManagerCreated(alice), Event::Transmit(alice_tab)]
    );
    assert_eq!(transmits(&mut a, alice_tab), [Transmit::Message(9)]);
}

#[test]
fn events_and_lookups_carry_the_factory_tag() {
    let mut f = tagged(0xfeed_beef);
    let m = f.create_manager(ctx("carol"), t(0)).unwrap();
    let c = f.add_connection(m, &ctx("carol"), t(0)).unwrap();
    assert_eq!(f.manager_for_user("carol"), Some(m));
    assert_eq!(f.connections(m).unwrap().collect::<Vec<_>>(), [c]);
    assert_eq!(f.owner_of(c), Ok(m));
    f.deactivate(m, t(1)).unwrap();
    for e in events(&mut f) {
        match e {
            Event::ManagerCreated(h) | Event::ManagerDeactivated { manager: h, .. } => {
                assert_eq!(h.factory_tag(), 0xfeed_beef)
            }
            Event::ConnectionClosed {
                connection,
                manager,
                ..
            } => assert_eq!(
                (connection.factory_tag(), manager.factory_tag()),
                (0xfeed_beef, 0xfeed_beef)
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
}
