//! The gateway firmware on a Linux host: the same connection tasks, shard
//! and timer as on the board, over `embassy-net-tuntap` on an existing TAP
//! device, with embassy's std executor and time driver.
//!
//! ```text
//! USERLANE_GATEWAY_SECRET=… gateway-host --tap tap0 --address 10.77.0.2/24 --port 8080 \
//!     [--idle-timeout-ms 60000] [--ping-interval-ms 25000] [--write-timeout-ms 10000] \
//!     [--handshake-timeout-ms 10000] [--ntp A.B.C.D:PORT]
//! ```
//!
//! With `--ntp` the wall clock comes from that SNTP server, as on the
//! board (tokens are refused until it answers); without it, from the host.

use std::process::exit;

use embassy_executor::{Executor, Spawner};
use embassy_net::{Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::Duration;
use static_cell::StaticCell;
use userlane_gateway::{lanes, Settings, CONNECTIONS, PER_USER, TASKS};

struct Options {
    tap: String,
    address: Ipv4Cidr,
    port: u16,
    idle_timeout_ms: u64,
    ping_interval_ms: u64,
    write_timeout_ms: u64,
    handshake_timeout_ms: u64,
    ntp: Option<std::net::SocketAddr>,
    secret: Vec<u8>,
}

fn usage(problem: &str) -> ! {
    eprintln!("gateway-host: {problem}");
    eprintln!(
        "usage: USERLANE_GATEWAY_SECRET=… gateway-host --tap NAME --address A.B.C.D/N [--port 8080] \
         [--idle-timeout-ms 60000] [--ping-interval-ms 25000] [--write-timeout-ms 10000] \
         [--handshake-timeout-ms 10000] [--ntp A.B.C.D:PORT]"
    );
    exit(2)
}

fn options() -> Options {
    let mut o = Options {
        tap: "tap0".into(),
        address: Ipv4Cidr::new(core::net::Ipv4Addr::new(10, 77, 0, 2), 24),
        port: 8080,
        idle_timeout_ms: 60_000,
        ping_interval_ms: 25_000,
        write_timeout_ms: 10_000,
        handshake_timeout_ms: 10_000,
        ntp: None,
        secret: match std::env::var("USERLANE_GATEWAY_SECRET") {
            Ok(s) if !s.is_empty() => s.into_bytes(),
            _ => usage("set USERLANE_GATEWAY_SECRET"),
        },
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            usage(&format!("{flag} needs a value"))
        };
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number")))
        };
        match flag.as_str() {
            "--tap" => o.tap = value.clone(),
            "--address" => {
                let (ip, prefix) = value
                    .split_once('/')
                    .and_then(|(ip, p)| Some((ip.parse().ok()?, p.parse::<u8>().ok()?)))
                    .filter(|(_, p)| *p <= 32)
                    .unwrap_or_else(|| usage("--address: A.B.C.D/N"));
                o.address = Ipv4Cidr::new(ip, prefix);
            }
            "--port" => {
                o.port = u16::try_from(number()).unwrap_or_else(|_| usage("--port: 1..65535"))
            }
            "--idle-timeout-ms" => o.idle_timeout_ms = number(),
            "--ping-interval-ms" => o.ping_interval_ms = number(),
            "--write-timeout-ms" => o.write_timeout_ms = number(),
            "--handshake-timeout-ms" => o.handshake_timeout_ms = number(),
            "--ntp" => {
                o.ntp = Some(
                    value
                        .parse()
                        .unwrap_or_else(|_| usage("--ntp: A.B.C.D:PORT")),
                )
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    o
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn main_task(spawner: Spawner, o: Options) {
    let device = TunTapDevice::new(&o.tap).unwrap_or_else(|e| {
        eprintln!("gateway-host: TAP device {}: {e}", o.tap);
        exit(1)
    });
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: o.address,
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    static RESOURCES: StaticCell<StackResources<{ TASKS + 2 }>> = StaticCell::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let (stack, runner) =
        embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    spawner.spawn(net_task(runner).expect("one net task"));

    match o.ntp {
        Some(server) => {
            spawner.spawn(userlane_gateway::sntp_task(stack, server).expect("one SNTP task"))
        }
        None => userlane_gateway::CLOCK.set_unix_ms(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        ),
    }
    static SETTINGS: StaticCell<Settings> = StaticCell::new();
    let settings = SETTINGS.init(Settings {
        port: o.port,
        secret: Vec::leak(o.secret),
        handshake_timeout: Duration::from_millis(o.handshake_timeout_ms),
        ping_interval: Duration::from_millis(o.ping_interval_ms),
        write_timeout: Duration::from_millis(o.write_timeout_ms),
        close_grace: Duration::from_secs(2),
    });
    let shard = userlane_gateway::shard(lanes::config(PER_USER, o.idle_timeout_ms));
    userlane_gateway::spawn_gateway(spawner, stack, shard, settings)
        .expect("tasks fit their pools");
    println!(
        "gateway-host: serving ws://{}:{}/ws on {} ({} connections, {} per user)",
        o.address.address(),
        o.port,
        o.tap,
        CONNECTIONS,
        PER_USER
    );
}

fn main() {
    let o = options();
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    EXECUTOR
        .init(Executor::new())
        .run(|spawner| spawner.spawn(main_task(spawner, o).expect("one main task")));
}
