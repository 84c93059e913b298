//! `send_to_user` with 10,000 users (80 % one connection, 20 % two or three),
//! payload a shared `Arc<[u8]>`, against B-map and B-rw; the same under a
//! connect/disconnect churn thread; connect + disconnect; create + reclaim.
//!
//! Only the enqueue is timed: every 10,000 sends the queues are drained
//! (what the writers do) with the timer stopped.

mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use criterion::{criterion_group, criterion_main, Criterion};
use support::*;
use userlane_core::{Config, Instant};

/// Times `iters` sends, `USERS` at a time in a fixed random order, with the
/// queues drained (untimed) after every round.
fn timed_rounds<S>(
    iters: u64,
    order: &[usize],
    state: &mut S,
    mut send: impl FnMut(&mut S, usize),
    mut drain: impl FnMut(&mut S),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(order.len() as u64) as usize;
        let t = StdInstant::now();
        for &k in &order[..n] {
            send(state, k);
        }
        total += t.elapsed();
        drain(state);
        left -= n as u64;
    }
    total
}

fn send_uncontended(c: &mut Criterion) {
    let order = permutation(USERS);
    let frame = frame();
    let mut g = c.benchmark_group("send_to_user_10k");
    let mut lanes = Lanes::build();
    g.bench_function("userlane_by_id", |b| {
        b.iter_custom(|iters| {
            timed_rounds(
                iters,
                &order,
                &mut lanes,
                |l, k| {
                    let m = l.f.manager_for_user(black_box(&l.ids[k])).unwrap();
                    black_box(l.f.send_to_user(m, frame.clone(), Instant::ZERO)).ok();
                },
                Lanes::drain,
            )
        })
    });
    g.bench_function("userlane_by_handle", |b| {
        b.iter_custom(|iters| {
            timed_rounds(
                iters,
                &order,
                &mut lanes,
                |l, k| {
                    let m = black_box(l.managers[k]);
                    black_box(l.f.send_to_user(m, frame.clone(), Instant::ZERO)).ok();
                },
                Lanes::drain,
            )
        })
    });
    drop(lanes);
    let ids: Vec<String> = (0..USERS).map(user_id).collect();
    let bmap = BMap::build();
    g.bench_function("b_map", |b| {
        b.iter_custom(|iters| {
            timed_rounds(
                iters,
                &order,
                &mut (),
                |_, k| {
                    black_box(bmap_send(&bmap.map, black_box(&ids[k]), &frame));
                },
                |_| bmap.drain(),
            )
        })
    });
    drop(bmap);
    let brw = BRw::build();
    g.bench_function("b_rw", |b| {
        b.iter_custom(|iters| {
            timed_rounds(
                iters,
                &order,
                &mut (),
                |_, k| {
                    black_box(brw_send(&brw.map, black_box(&ids[k]), &frame));
                },
                |_| brw.drain(),
            )
        })
    });
    g.finish();
}

/// A churn thread: connect + disconnect of extra connections of the
/// workload's users, `rate` operations per second (0: as fast as it can).
fn churn(stop: Arc<AtomicBool>, ops: Arc<AtomicU64>, rate: u64, mut op: impl FnMut(usize)) {
    let start = StdInstant::now();
    let mut done = 0u64;
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if rate > 0 {
            // Paced in 1 ms steps: do what is due, then sleep.
            let due = start.elapsed().as_micros() as u64 * rate / 1_000_000;
            if done >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
        }
        op(k);
        k = (k + 7919) % USERS;
        done += 2; // one connect, one disconnect
        ops.store(done, Ordering::Relaxed);
    }
}

fn send_with_churn(c: &mut Criterion) {
    let order = permutation(USERS);
    let frame = frame();
    let ids: Arc<Vec<String>> = Arc::new((0..USERS).map(user_id).collect());
    let mut g = c.benchmark_group("send_to_user_10k_churn");
    for (label, rate) in [("50k_ops", 50_000u64), ("flat_out", 0)] {
        // userlane: the async shim (lock, one core call, pump wakers, unlock).
        let (shard, conns) = build_shard(&ids);
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let churner = {
            let (shard, ids, stop, ops) = (shard.clone(), ids.clone(), stop.clone(), ops.clone());
            let ctxs: Vec<_> = ids.iter().map(|id| ctx(id)).collect();
            std::thread::spawn(move || {
                churn(stop, ops, rate, |k| {
                    let (m, c) = shard.connect(&ctxs[k], Instant::ZERO).unwrap();
                    shard.remove_connection(m, c, Instant::ZERO).unwrap();
                })
            })
        };
        g.bench_function(format!("userlane_shim/{label}"), |b| {
            b.iter_custom(|iters| {
                timed_rounds(
                    iters,
                    &order,
                    &mut (),
                    |_, k| {
                        black_box(shard.send_to_user_id(
                            black_box(&ids[k]),
                            frame.clone(),
                            Instant::ZERO,
                        ))
                        .ok();
                    },
                    |_| {
                        for c in &conns {
                            shard.drain_transmits(*c, usize::MAX, |t| {
                                black_box(t);
                            });
                        }
                    },
                )
            })
        });
        stop.store(true, Ordering::Relaxed);
        churner.join().unwrap();
        eprintln!(
            "  (churn ops during userlane_shim/{label}: {})",
            ops.load(Ordering::Relaxed)
        );
        drop(shard);

        let bmap = Arc::new(BMap::build());
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let churner = {
            let (bmap, ids, stop, ops) = (bmap.clone(), ids.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                churn(stop, ops, rate, |k| {
                    let conn = bmap_connect(&bmap.map, &ids[k]);
                    bmap_disconnect(&bmap.map, &ids[k], &conn);
                })
            })
        };
        g.bench_function(format!("b_map/{label}"), |b| {
            b.iter_custom(|iters| {
                timed_rounds(
                    iters,
                    &order,
                    &mut (),
                    |_, k| {
                        black_box(bmap_send(&bmap.map, black_box(&ids[k]), &frame));
                    },
                    |_| bmap.drain(),
                )
            })
        });
        stop.store(true, Ordering::Relaxed);
        churner.join().unwrap();
        eprintln!(
            "  (churn ops during b_map/{label}: {})",
            ops.load(Ordering::Relaxed)
        );
    }
    g.finish();
}

fn lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("lifecycle");
    let mut lanes = Lanes::build();
    let ctxs: Vec<_> = lanes.ids.iter().map(|id| ctx(id)).collect();
    let mut k = 0usize;
    g.bench_function("connect_disconnect/userlane", |b| {
        b.iter(|| {
            k = (k + 7919) % USERS;
            let m = lanes.managers[k];
            let c = lanes.f.add_connection(m, &ctxs[k], Instant::ZERO).unwrap();
            black_box(lanes.f.remove_connection(m, c, Instant::ZERO).unwrap());
        })
    });
    drop(lanes);
    let bmap = BMap::build();
    g.bench_function("connect_disconnect/b_map", |b| {
        b.iter(|| {
            k = (k + 7919) % USERS;
            let id = &ctxs[k];
            let conn = bmap_connect(&bmap.map, id.user_id());
            bmap_disconnect(&bmap.map, id.user_id(), black_box(&conn));
        })
    });

    // Create a manager for a new user and let the timer reclaim it, next to
    // 10,000 live users.
    let mut reclaim = Lanes::build_with(Config {
        empty_manager_ttl_ms: Some(1),
        ..send_config()
    });
    let fresh: Vec<_> = (0..1024).map(|i| ctx(&format!("fresh-{i}"))).collect();
    let mut now = 0u64;
    g.bench_function("create_reclaim/userlane", |b| {
        b.iter(|| {
            now += 2;
            let f = &mut reclaim.f;
            let m = f
                .create_manager(
                    fresh[(now as usize / 2) % 1024].clone(),
                    Instant::from_millis(now),
                )
                .unwrap();
            f.handle_timeout(Instant::from_millis(now + 1));
            while let Some(e) = f.poll_event() {
                black_box(e);
            }
            black_box(m);
        })
    });
    drop(reclaim);
    let fresh_ids: Vec<String> = (0..1024).map(|i| format!("fresh-{i}")).collect();
    g.bench_function("create_reclaim/b_map", |b| {
        b.iter(|| {
            now += 2;
            let id = &fresh_ids[(now as usize / 2) % 1024];
            bmap.map.lock().unwrap().entry(id.clone()).or_default();
            black_box(bmap.map.lock().unwrap().remove(black_box(id.as_str())));
        })
    });
    g.finish();
}

criterion_group!(benches, send_uncontended, send_with_churn, lifecycle);
criterion_main!(benches);
