//! Fan-out of one message to every connection of one user (8 connections,
//! and 10,000), against B-bcast (`async-broadcast`; embassy-sync
//! `PubSubChannel` as the no_std reference) and B-map's per-connection
//! channels. A delivery is counted when the consumer side holds the message:
//! publish plus every consumer taking it (for userlane: `send_to_user`, then
//! `drain_events` as the shim's pump does and `poll_transmit` for each
//! connection, as the writers do).
//! Divide the time per iteration by the fan-out for the cost per delivery.

mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::pubsub::PubSubChannel;
use support::*;

fn bench_n<const SUBS: usize>(c: &mut Criterion, n: usize) {
    let frame = frame();
    let mut g = c.benchmark_group(format!("fanout_{n}"));
    g.throughput(Throughput::Elements(n as u64));

    let (mut f, m, _conns) = fan_factory(n);
    let mut ready = Vec::with_capacity(n);
    g.bench_function(BenchmarkId::new("userlane", n), |b| {
        b.iter(|| userlane_fanout(&mut f, m, &frame, &mut ready))
    });
    drop(f);

    let (tx, rx) = async_broadcast::broadcast::<Frame>(16);
    let mut rxs: Vec<_> = (0..n).map(|_| rx.clone()).collect();
    drop(rx);
    g.bench_function(BenchmarkId::new("async_broadcast", n), |b| {
        b.iter(|| {
            tx.try_broadcast(frame.clone()).unwrap();
            for r in rxs.iter_mut() {
                black_box(r.try_recv().unwrap());
            }
        })
    });
    drop((tx, rxs));

    let chan: Box<PubSubChannel<NoopRawMutex, Frame, 16, SUBS, 1>> = Box::new(PubSubChannel::new());
    let publisher = chan.immediate_publisher();
    let mut subs: Vec<_> = (0..n).map(|_| chan.subscriber().unwrap()).collect();
    g.bench_function(BenchmarkId::new("embassy_pubsub", n), |b| {
        b.iter(|| {
            publisher.publish_immediate(frame.clone());
            for s in subs.iter_mut() {
                black_box(s.try_next_message_pure().unwrap());
            }
        })
    });
    drop((publisher, subs));
    drop(chan);

    let pairs: Vec<_> = (0..n)
        .map(|_| async_channel::bounded::<Frame>(QUEUE_DEPTH as usize))
        .collect();
    g.bench_function(BenchmarkId::new("b_map_channels", n), |b| {
        b.iter(|| {
            for (tx, _) in &pairs {
                tx.try_send(frame.clone()).unwrap();
            }
            for (_, rx) in &pairs {
                black_box(rx.try_recv().unwrap());
            }
        })
    });
    g.finish();
}

fn fanout(c: &mut Criterion) {
    bench_n::<8>(c, 8);
    bench_n::<10_000>(c, 10_000);
}

criterion_group!(benches, fanout);
criterion_main!(benches);
