//! Every decoding of external input, checked on arbitrary bytes: the
//! `decode_external` fuzz target calls [`check`], and the stable test suite
//! calls it on hand-made and random inputs.
//!
//! For each type that crosses a boundary (`UserContext`, `Config`,
//! `CloseCode`, `CloseFrame`, handles, `Op`, and the output types a peer could
//! send back) the bytes are decoded as postcard and as JSON. Decoding must
//! never panic, and whatever decodes must be valid:
//!
//! - a `UserContext` passes every check of `UserContext::new` again and
//!   round-trips through both formats;
//! - a `Config` is accepted by `ManagerFactory::new` exactly when
//!   `Config::validate` accepts it, and an accepted one runs a short session
//!   whose stats add up;
//! - a `CloseCode` (alone or in a `CloseFrame`) is a sendable code;
//! - a handle, forged or not, is refused or acted on by a live factory
//!   without panicking, and its stats still add up;
//! - an `Op` round-trips.

use serde::de::DeserializeOwned;
use serde::Serialize;

use userlane_core::{
    CloseCode, CloseFrame, Config, ConnectionHandle, ContextError, Error, Event, Instant,
    ManagerFactory, ManagerHandle, SendOutcome, Stats, Transmit, UserContext,
};

use crate::ops::Op;

fn postcard<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    postcard::from_bytes(data).ok()
}

fn json<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// Both decodings of `data`, for types that decode from either.
fn both<T: DeserializeOwned>(data: &[u8]) -> impl Iterator<Item = T> {
    postcard(data).into_iter().chain(json(data))
}

fn round_trips<T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug>(v: &T) {
    let bytes = postcard::to_allocvec(v).expect("encodes");
    assert_eq!(&postcard::from_bytes::<T>(&bytes).expect("decodes"), v);
    let text = serde_json::to_string(v).expect("encodes");
    assert_eq!(&serde_json::from_str::<T>(&text).expect("decodes"), v);
}

/// Checks every decoder on `data`; panics on a violation.
pub fn check(data: &[u8]) {
    for ctx in both::<UserContext>(data) {
        check_context(&ctx);
    }
    for cfg in both::<Config>(data) {
        check_config(cfg);
    }
    for code in both::<CloseCode>(data) {
        assert_eq!(CloseCode::new(code.as_u16()), Ok(code));
        assert!(matches!(code.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999));
        round_trips(&code);
    }
    for frame in both::<CloseFrame>(data) {
        assert_eq!(CloseCode::new(frame.code.as_u16()), Ok(frame.code));
        assert!(frame.reason.as_str().len() <= 123);
        round_trips(&frame);
    }
    for op in both::<Op>(data) {
        round_trips(&op);
    }
    if let Some(ops) = postcard::<Vec<Op>>(data) {
        round_trips(&ops);
    }
    let managers: Vec<ManagerHandle> = both(data).collect();
    let conns: Vec<ConnectionHandle> = both(data).collect();
    if !managers.is_empty() || !conns.is_empty() {
        check_handles(&managers, &conns);
    }
    // Types a peer could send back: decoding alone must not panic.
    let _ = both::<Error>(data).count();
    let _ = both::<ContextError>(data).count();
    let _ = both::<Event>(data).count();
    let _ = both::<Transmit<String>>(data).count();
    let _ = both::<SendOutcome>(data).count();
    let _ = both::<Stats>(data).count();
    let _ = both::<Instant>(data).count();
}

fn check_context(ctx: &UserContext) {
    let again = UserContext::new(
        ctx.user_id(),
        ctx.thread_id(),
        ctx.run_id(),
        ctx.request_id(),
    )
    .unwrap_or_else(|e| panic!("decoded {ctx:?}, which UserContext::new refuses: {e}"));
    let again = match ctx.connection_id() {
        Some(id) => again
            .with_connection_id(id)
            .unwrap_or_else(|e| panic!("decoded {ctx:?}, whose connection id is refused: {e}")),
        None => again,
    };
    assert_eq!(&again, ctx);
    round_trips(ctx);
}

type Probe = ManagerFactory<u32, 3, 4, 32, 4, u16>;

fn check_config(cfg: Config) {
    let valid = cfg.validate(Probe::CAPACITY);
    let built = Probe::new(cfg);
    assert_eq!(built.as_ref().err(), valid.err().as_ref());
    round_trips(&cfg);
    let Ok(mut f) = built else {
        let e = valid.unwrap_err();
        assert!(e.to_string().starts_with("config "), "{e}");
        return;
    };
    // A short session on the decoded limits.
    let alice = UserContext::new("alice", "t", "r", "q").unwrap();
    let mut now = Instant::from_millis(1);
    let m = f.create_manager(alice.clone(), now).unwrap();
    for i in 0..8u32 {
        now = now.saturating_add_millis(u64::from(i) * 1_000);
        let _ = f.add_connection(m, &alice, now);
        let _ = f.send_to_user(m, i, now);
        if let Some(c) = f.connections(m).ok().and_then(|mut c| c.next()) {
            for bytes in [0, 1, 1 << 20, usize::MAX] {
                let _ = f.handle_inbound(c, bytes, now);
            }
        }
        let _ = f.create_offline_manager(UserContext::new("bob", "t", "r", "q").unwrap(), now);
        while let Some(e) = f.poll_event() {
            if let Event::Transmit(c) | Event::ConnectionClosed { connection: c, .. } = e {
                while let Ok(Some(t)) = f.poll_transmit(c) {
                    if matches!(t, Transmit::Close(_)) {
                        f.handle_closed(c, now).unwrap();
                    }
                }
            }
        }
        if let Some(t) = f.poll_timeout() {
            f.handle_timeout(t);
        }
        assert!(f.stats().is_consistent(), "{:?}", f.stats());
        assert!(f.stats().connections_active <= u64::from(cfg.max_connections));
    }
}

fn check_handles(managers: &[ManagerHandle], conns: &[ConnectionHandle]) {
    let mut f = Probe::new(Config::for_capacity(3, 4)).unwrap();
    let now = Instant::from_millis(5);
    let alice = UserContext::new("alice", "t", "r", "q").unwrap();
    let bob = UserContext::new("bob", "t", "r", "q").unwrap();
    let a = f.create_manager(alice.clone(), now).unwrap();
    let b = f.create_manager(bob.clone(), now).unwrap();
    let ca = f.add_connection(a, &alice, now).unwrap();
    let cb = f.add_connection(b, &bob, now).unwrap();
    while f.poll_event().is_some() {}
    for &m in managers {
        let active = f.is_active(m);
        assert!(!active || m == a || m == b, "{m:?} was never issued");
        if m.factory_tag() != a.factory_tag() {
            assert!(!active, "{m:?} of another factory is active");
        }
        let r = f.send_to_user(m, 7, now).map_err(Error::from);
        if !active {
            assert!(
                matches!(r, Err(Error::ManagerInactive(_) | Error::UnknownManager(_))),
                "{m:?}: {r:?}"
            );
        }
        let _ = f.context(m);
        let _ = f.connections(m).map(Iterator::count);
        let _ = f.add_connection(m, &alice, now);
        for &c in conns.iter().chain([ca, cb].iter()) {
            let _ = f.close_connection(m, c, CloseCode::NORMAL, now);
            let _ = f.remove_connection(m, c, now);
        }
        let _ = f.deactivate(m, now);
    }
    for &c in conns {
        let _ = f.handle_activity(c, now);
        let _ = f.handle_inbound(c, 1, now);
        let _ = f.owner_of(c);
        let _ = f.queued(c);
        while f.poll_transmit(c).is_ok_and(|t| t.is_some()) {}
        let _ = f.handle_closed(c, now);
    }
    while f.poll_event().is_some() {}
    let s = f.stats();
    assert!(s.is_consistent(), "{s:?}");
    assert!(s.connections_active <= 4 && s.managers_active <= 3, "{s:?}");
}
