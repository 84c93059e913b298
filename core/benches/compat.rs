//! The legacy facade against the direct path: the cost of finding the user's
//! manager by id and recording the call site, per `send_to_user`.
#![allow(deprecated)] // The legacy path is what is measured.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use userlane_core::compat::{LegacyManager, LegacyMetadata};
use userlane_core::{Config, Instant};

type Legacy = LegacyManager<u64, 1024, 1024, 4096>;
const USERS: usize = 1000;

fn setup() -> (Box<Legacy>, Vec<String>) {
    let mut l = Box::new(
        Legacy::new(Config {
            idle_timeout_ms: None,
            ..Config::for_capacity(1024, 1024)
        })
        .unwrap(),
    );
    let names: Vec<String> = (0..USERS).map(|i| format!("user-{i}")).collect();
    for n in &names {
        l.connect_user(n, LegacyMetadata::default(), Instant::ZERO)
            .unwrap();
        while l.factory_mut().poll_event().is_some() {}
    }
    (l, names)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_to_user, 1 connection, 1000 users");
    let (mut l, names) = setup();
    let handles: Vec<_> = names
        .iter()
        .map(|n| l.factory().manager_for_user(n).unwrap())
        .collect();
    let conns: Vec<_> = handles
        .iter()
        .map(|m| l.factory().connections(*m).unwrap().next().unwrap())
        .collect();
    let mut i = 0usize;
    g.bench_function("direct: ManagerFactory::send_to_user(handle)", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let f = l.factory_mut();
            f.send_to_user(handles[i], black_box(i as u64), Instant::ZERO)
                .unwrap();
            let _ = black_box(f.poll_transmit(conns[i]));
        })
    });
    g.bench_function("legacy: LegacyManager::send_to_user(user_id)", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            l.send_to_user(black_box(&names[i]), black_box(i as u64), Instant::ZERO)
                .unwrap();
            let _ = black_box(l.factory_mut().poll_transmit(conns[i]));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
