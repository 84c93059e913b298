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

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
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

/// What one churn case needs: the send order, the frame and the user ids.
struct ChurnCase<'a> {
    label: &'a str,
    rate: u64,
    order: &'a [usize],
    frame: &'a Frame,
    ids: &'a Arc<Vec<String>>,
}

fn send_with_churn(c: &mut Criterion) {
    let order = permutation(USERS);
    let frame = frame();
    let ids: Arc<Vec<String>> = Arc::new((0..USERS).map(user_id).collect());
    let mut g = c.benchmark_group("send_to_user_10k_churn");
    for (label, rate) in [("50k_ops", 50_000u64), ("flat_out", 0)] {
        let case = ChurnCase {
            label,
            rate,
            order: &order,
            frame: &frame,
            ids: &ids,
        };
        churn_userlane(&mut g, &case);
        churn_bmap(&mut g, &case);
    }
    g.finish();
}

/// Runs `bench` while a second thread does `op` (a connect + disconnect of
/// user `k`) at `case.rate`; reports how many churn operations ran.
fn under_churn(
    case: &ChurnCase<'_>,
    design: &str,
    op: impl FnMut(usize) + Send + 'static,
    bench: impl FnOnce(),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let churner = {
        let (stop, ops, rate) = (stop.clone(), ops.clone(), case.rate);
        std::thread::spawn(move || churn(stop, ops, rate, op))
    };
    bench();
    stop.store(true, Ordering::Relaxed);
    churner.join().unwrap();
    eprintln!(
        "  (churn ops during {design}/{}: {})",
        case.label,
        ops.load(Ordering::Relaxed)
    );
}

/// One timed benchmark `design/label`: sends in `case.order`, then drains.
fn churn_bench(
    g: &mut BenchmarkGroup<'_, WallTime>,
    case: &ChurnCase<'_>,
    design: &str,
    mut send: impl FnMut(usize),
    mut drain: impl FnMut(),
) {
    g.bench_function(format!("{design}/{}", case.label), |b| {
        b.iter_custom(|iters| timed_rounds(iters, case.order, &mut (), |_, k| send(k), |_| drain()))
    });
}

/// userlane under churn: the async shim (lock, one core call, pump wakers,
/// unlock).
fn churn_userlane(g: &mut BenchmarkGroup<'_, WallTime>, case: &ChurnCase<'_>) {
    let (shard, conns) = build_shard(case.ids);
    let churned = shard.clone();
    let ctxs: Vec<_> = case.ids.iter().map(|id| ctx(id)).collect();
    let op = move |k: usize| {
        let (m, c) = churned.connect(&ctxs[k], Instant::ZERO).unwrap();
        churned.remove_connection(m, c, Instant::ZERO).unwrap();
    };
    under_churn(case, "userlane_shim", op, || {
        let send = |k: usize| {
            let sent =
                shard.send_to_user_id(black_box(&case.ids[k]), case.frame.clone(), Instant::ZERO);
            black_box(sent).ok();
        };
        let drain = || {
            for c in &conns {
                shard.drain_transmits(*c, usize::MAX, |t| {
                    black_box(t);
                });
            }
        };
        churn_bench(g, case, "userlane_shim", send, drain);
    });
}

/// B-map under the same churn.
fn churn_bmap(g: &mut BenchmarkGroup<'_, WallTime>, case: &ChurnCase<'_>) {
    let bmap = Arc::new(BMap::build());
    let (churned, ids) = (bmap.clone(), case.ids.clone());
    let op = move |k: usize| {
        let conn = bmap_connect(&churned.map, &ids[k]);
        bmap_disconnect(&churned.map, &ids[k], &conn);
    };
    under_churn(case, "b_map", op, || {
        let send = |k: usize| {
            black_box(bmap_send(&bmap.map, black_box(&case.ids[k]), case.frame));
        };
        churn_bench(g, case, "b_map", send, || bmap.drain());
    });
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
