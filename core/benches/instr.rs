//! The bodies of the micro-benchmarks as plain functions, for instruction
//! counts under valgrind callgrind (`bench/callgrind.sh`), which are stable
//! on a noisy machine where times are not.
//!
//! `instr <body> <ops>` builds the body's state (not counted), then runs
//! `body_<body>` for `<ops>` operations; callgrind counts only inside
//! `body_*` (`--toggle-collect`). Without arguments (as `cargo bench` runs
//! it) every body runs once as a smoke test.

mod support;

use std::hint::black_box;

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::pubsub::{PubSubChannel, Subscriber};
use support::*;
use userlane_core::{Config, Instant, ManagerHandle};

#[inline(never)]
fn body_send_userlane_by_id(l: &mut Lanes, order: &[usize], frame: &Frame) {
    for &k in order {
        let m = l.f.manager_for_user(black_box(&l.ids[k])).unwrap();
        black_box(l.f.send_to_user(m, frame.clone(), Instant::ZERO)).ok();
    }
}

#[inline(never)]
fn body_send_userlane_by_handle(l: &mut Lanes, order: &[usize], frame: &Frame) {
    for &k in order {
        let m = black_box(l.managers[k]);
        black_box(l.f.send_to_user(m, frame.clone(), Instant::ZERO)).ok();
    }
}

#[inline(never)]
fn body_send_shim_by_id(shard: &Shard, ids: &[String], order: &[usize], frame: &Frame) {
    for &k in order {
        black_box(shard.send_to_user_id(black_box(&ids[k]), frame.clone(), Instant::ZERO)).ok();
    }
}

#[inline(never)]
fn body_send_b_map(b: &BMap, ids: &[String], order: &[usize], frame: &Frame) {
    for &k in order {
        black_box(bmap_send(&b.map, black_box(&ids[k]), frame));
    }
}

#[inline(never)]
fn body_send_b_rw(b: &BRw, ids: &[String], order: &[usize], frame: &Frame) {
    for &k in order {
        black_box(brw_send(&b.map, black_box(&ids[k]), frame));
    }
}

#[inline(never)]
fn body_connect_disconnect_userlane(
    l: &mut Lanes,
    ctxs: &[userlane_core::UserContext],
    ops: usize,
) {
    let mut k = 0;
    for _ in 0..ops {
        k = (k + 7919) % USERS;
        let m = l.managers[k];
        let c = l.f.add_connection(m, &ctxs[k], Instant::ZERO).unwrap();
        black_box(l.f.remove_connection(m, c, Instant::ZERO).unwrap());
    }
}

#[inline(never)]
fn body_connect_disconnect_b_map(b: &BMap, ids: &[String], ops: usize) {
    let mut k = 0;
    for _ in 0..ops {
        k = (k + 7919) % USERS;
        let conn = bmap_connect(&b.map, &ids[k]);
        bmap_disconnect(&b.map, &ids[k], black_box(&conn));
    }
}

#[inline(never)]
fn body_create_reclaim_userlane(l: &mut Lanes, fresh: &[userlane_core::UserContext], ops: usize) {
    for i in 0..ops {
        let now = 2 * i as u64 + 2;
        let m =
            l.f.create_manager(fresh[i % fresh.len()].clone(), Instant::from_millis(now))
                .unwrap();
        l.f.handle_timeout(Instant::from_millis(now + 1));
        while let Some(e) = l.f.poll_event() {
            black_box(e);
        }
        black_box(m);
    }
}

#[inline(never)]
fn body_create_reclaim_b_map(b: &BMap, fresh: &[String], ops: usize) {
    for i in 0..ops {
        let id = &fresh[i % fresh.len()];
        b.map.lock().unwrap().entry(id.clone()).or_default();
        black_box(b.map.lock().unwrap().remove(black_box(id.as_str())));
    }
}

#[inline(never)]
fn body_fanout_userlane(f: &mut FanFactory, m: ManagerHandle, frame: &Frame, ops: usize) {
    let mut ready = Vec::with_capacity(f.connection_count(m).unwrap() as usize);
    for _ in 0..ops {
        userlane_fanout(f, m, frame, &mut ready);
    }
}

#[inline(never)]
fn body_fanout_async_broadcast(
    tx: &async_broadcast::Sender<Frame>,
    rxs: &mut [async_broadcast::Receiver<Frame>],
    frame: &Frame,
    ops: usize,
) {
    for _ in 0..ops {
        tx.try_broadcast(frame.clone()).unwrap();
        for r in rxs.iter_mut() {
            black_box(r.try_recv().unwrap());
        }
    }
}

type Pubsub<const S: usize> = PubSubChannel<NoopRawMutex, Frame, 16, S, 1>;

#[inline(never)]
fn body_fanout_embassy<const S: usize>(
    chan: &Pubsub<S>,
    subs: &mut [Subscriber<'_, NoopRawMutex, Frame, 16, S, 1>],
    frame: &Frame,
    ops: usize,
) {
    let p = chan.immediate_publisher();
    for _ in 0..ops {
        p.publish_immediate(frame.clone());
        for s in subs.iter_mut() {
            black_box(s.try_next_message_pure().unwrap());
        }
    }
}

#[inline(never)]
fn body_fanout_b_map(
    pairs: &[(async_channel::Sender<Frame>, async_channel::Receiver<Frame>)],
    frame: &Frame,
    ops: usize,
) {
    for _ in 0..ops {
        for (tx, _) in pairs {
            tx.try_send(frame.clone()).unwrap();
        }
        for (_, rx) in pairs {
            black_box(rx.try_recv().unwrap());
        }
    }
}

fn fanout<const S: usize>(design: &str, n: usize, ops: usize) {
    let frame = frame();
    match design {
        "userlane" => {
            let (mut f, m, _c) = fan_factory(n);
            body_fanout_userlane(&mut f, m, &frame, ops);
        }
        "async_broadcast" => {
            let (tx, rx) = async_broadcast::broadcast::<Frame>(16);
            let mut rxs: Vec<_> = (0..n).map(|_| rx.clone()).collect();
            drop(rx);
            body_fanout_async_broadcast(&tx, &mut rxs, &frame, ops);
        }
        "embassy" => {
            let chan: Box<Pubsub<S>> = Box::new(PubSubChannel::new());
            let mut subs: Vec<_> = (0..n).map(|_| chan.subscriber().unwrap()).collect();
            body_fanout_embassy(&chan, &mut subs, &frame, ops);
        }
        "b_map" => {
            let pairs: Vec<_> = (0..n)
                .map(|_| async_channel::bounded::<Frame>(QUEUE_DEPTH as usize))
                .collect();
            body_fanout_b_map(&pairs, &frame, ops);
        }
        other => panic!("unknown fan-out design {other}"),
    }
}

/// Runs one body for `ops` operations (sends are capped at one round of
/// 10,000 users, so no queue fills).
fn run(body: &str, ops: usize) {
    let frame = frame();
    let ids: Vec<String> = (0..USERS).map(user_id).collect();
    let order = permutation(USERS);
    let order = &order[..ops.min(USERS)];
    match body {
        "send_userlane_by_id" => body_send_userlane_by_id(&mut Lanes::build(), order, &frame),
        "send_userlane_by_handle" => {
            body_send_userlane_by_handle(&mut Lanes::build(), order, &frame)
        }
        "send_shim_by_id" => body_send_shim_by_id(&build_shard(&ids).0, &ids, order, &frame),
        "send_b_map" => body_send_b_map(&BMap::build(), &ids, order, &frame),
        "send_b_rw" => body_send_b_rw(&BRw::build(), &ids, order, &frame),
        "connect_disconnect_userlane" => {
            let mut l = Lanes::build();
            let ctxs: Vec<_> = l.ids.iter().map(|id| ctx(id)).collect();
            body_connect_disconnect_userlane(&mut l, &ctxs, ops)
        }
        "connect_disconnect_b_map" => body_connect_disconnect_b_map(&BMap::build(), &ids, ops),
        "create_reclaim_userlane" => {
            let mut l = Lanes::build_with(Config {
                empty_manager_ttl_ms: Some(1),
                ..send_config()
            });
            let fresh: Vec<_> = (0..1024).map(|i| ctx(&format!("fresh-{i}"))).collect();
            body_create_reclaim_userlane(&mut l, &fresh, ops)
        }
        "create_reclaim_b_map" => {
            let fresh: Vec<_> = (0..1024).map(|i| format!("fresh-{i}")).collect();
            body_create_reclaim_b_map(&BMap::build(), &fresh, ops)
        }
        _ => {
            // fanout<N>_<design>
            let rest = body.strip_prefix("fanout").expect("unknown body");
            let (n, design) = rest.split_once('_').expect("fanout<N>_<design>");
            match n {
                "8" => fanout::<8>(design, 8, ops),
                "10k" => fanout::<10_000>(design, 10_000, ops),
                other => panic!("unknown fan-out size {other}"),
            }
        }
    }
}

/// Every body, with the operations it counts per run.
pub const BODIES: &[&str] = &[
    "send_userlane_by_id",
    "send_userlane_by_handle",
    "send_shim_by_id",
    "send_b_map",
    "send_b_rw",
    "connect_disconnect_userlane",
    "connect_disconnect_b_map",
    "create_reclaim_userlane",
    "create_reclaim_b_map",
    "fanout8_userlane",
    "fanout8_async_broadcast",
    "fanout8_embassy",
    "fanout8_b_map",
    "fanout10k_userlane",
    "fanout10k_async_broadcast",
    "fanout10k_embassy",
    "fanout10k_b_map",
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.as_slice() {
        [body, ops] => run(body, ops.parse().expect("ops is a number")),
        [body] if body == "list" => BODIES.iter().for_each(|b| println!("{b}")),
        _ => {
            for b in BODIES {
                run(b, 2);
            }
            println!(
                "instr: {} bodies ran once; bench/callgrind.sh counts their instructions",
                BODIES.len()
            );
        }
    }
}
