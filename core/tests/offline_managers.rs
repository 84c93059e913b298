//! Offline users cannot starve live ones: `create_offline_manager` stops at
//! `max_offline_managers` managers without a connection, `create_manager`
//! keeps `max_users`.

mod common;

use common::{ctx, lanes_with, small_config, t};
use userlane_core::{Config, Error, Limit};

#[test]
fn offline_creations_stop_at_the_cap_and_live_ones_still_succeed() {
    let mut f = lanes_with(Config {
        max_users: 4,
        max_offline_managers: 2,
        ..small_config()
    });
    let a = f.create_offline_manager(ctx("a"), t(0)).unwrap();
    f.create_offline_manager(ctx("b"), t(0)).unwrap();
    // Two managers without a connection: the cap is full for new users...
    assert_eq!(
        f.create_offline_manager(ctx("c"), t(0)),
        Err(Error::LimitReached(Limit::OfflineManagers))
    );
    assert_eq!(f.manager_for_user("c"), None);
    // ...not for users who have a manager already,
    assert_eq!(f.create_offline_manager(ctx("a"), t(0)), Ok(a));
    // ...and never for the live path.
    let live = f.create_manager(ctx("live"), t(0)).unwrap();
    f.add_connection(live, &ctx("live"), t(0)).unwrap();
    let s = f.stats();
    assert_eq!(s.rejected_offline_managers, 1);
    assert_eq!(s.resource_limit_hits(), 1);
    assert!(s.is_consistent());

    // A user who connects no longer counts as offline: room for one more.
    f.add_connection(a, &ctx("a"), t(1)).unwrap();
    f.create_offline_manager(ctx("c"), t(1)).unwrap();
    // max_users still bounds everything.
    assert_eq!(
        f.create_manager(ctx("d"), t(1)),
        Err(Error::LimitReached(Limit::Users))
    );
    assert_eq!(
        Error::LimitReached(Limit::OfflineManagers).to_string(),
        "limit reached: maximum number of users without a connection reached"
    );
}

#[test]
fn a_cap_of_zero_refuses_every_offline_creation() {
    let mut f = lanes_with(Config {
        max_offline_managers: 0,
        ..small_config()
    });
    assert_eq!(
        f.create_offline_manager(ctx("a"), t(0)),
        Err(Error::LimitReached(Limit::OfflineManagers))
    );
    let m = f.create_manager(ctx("a"), t(0)).unwrap();
    // The user now has a manager: the offline path finds it.
    assert_eq!(f.create_offline_manager(ctx("a"), t(0)), Ok(m));
}
