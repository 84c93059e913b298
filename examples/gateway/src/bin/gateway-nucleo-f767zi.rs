//! The gateway firmware on a NUCLEO-F767ZI: the STM32F767's Ethernet MAC
//! with the board's LAN8742A PHY (RMII), 216 MHz from the ST-LINK's 8 MHz
//! clock, the hardware RNG for the TCP stack's seed, a static address.
//!
//! Built with `USERLANE_GATEWAY_SECRET` (the HS256 secret) in the
//! environment; `USERLANE_GATEWAY_ADDRESS` (default 192.168.1.50/24) sets
//! the address and `USERLANE_GATEWAY_NTP` (default 192.168.1.1:123) the
//! SNTP server the wall clock comes from (tokens are refused until it has
//! answered).
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_stm32::eth::{self, Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, Config};
use embassy_time::Duration;
use panic_halt as _;
use static_cell::StaticCell;
use userlane_gateway::{lanes, Settings, PER_USER, TASKS};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

/// The HS256 secret, fixed at build time.
const SECRET: &str = match option_env!("USERLANE_GATEWAY_SECRET") {
    Some(s) if !s.is_empty() => s,
    _ => panic!("build with USERLANE_GATEWAY_SECRET set to the HS256 secret"),
};

/// The gateway's address and prefix.
const ADDRESS: &str = match option_env!("USERLANE_GATEWAY_ADDRESS") {
    Some(a) => a,
    None => "192.168.1.50/24",
};

/// The SNTP server.
const NTP: &str = match option_env!("USERLANE_GATEWAY_NTP") {
    Some(a) => a,
    None => "192.168.1.1:123",
};

/// The TCP port of `/ws`.
const PORT: u16 = 80;

/// The board's idle timeout and ping interval (the example server's).
const IDLE_TIMEOUT_MS: u64 = 60_000;
const PING_INTERVAL: Duration = Duration::from_secs(25);

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Device>) -> ! {
    runner.run().await
}

fn address() -> Ipv4Cidr {
    let parsed = ADDRESS
        .split_once('/')
        .and_then(|(ip, prefix)| Some(Ipv4Cidr::new(ip.parse().ok()?, prefix.parse().ok()?)));
    parsed.unwrap_or(Ipv4Cidr::new(core::net::Ipv4Addr::new(192, 168, 1, 50), 24))
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let mut config = Config::default();
    {
        use embassy_stm32::rcc::*;
        config.rcc.hse = Some(Hse {
            freq: Hertz(8_000_000),
            mode: HseMode::Bypass,
        });
        config.rcc.pll_src = PllSource::HSE;
        config.rcc.pll = Some(Pll {
            prediv: PllPreDiv::DIV4,
            mul: PllMul::MUL216,
            divp: Some(PllPDiv::DIV2), // 216 MHz system clock
            divq: Some(PllQDiv::DIV9), // 48 MHz for the RNG
            divr: None,
        });
        config.rcc.ahb_pre = AHBPrescaler::DIV1;
        config.rcc.apb1_pre = APBPrescaler::DIV4;
        config.rcc.apb2_pre = APBPrescaler::DIV2;
        config.rcc.sys = Sysclk::PLL1_P;
    }
    let p = embassy_stm32::init(config);

    let mut seed = [0u8; 8];
    Rng::new(p.RNG, Irqs).fill_bytes(&mut seed);
    let mut mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x00];
    mac[3..].copy_from_slice(&seed[..3]);

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        mac,
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );
    let net = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: address(),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    static RESOURCES: StaticCell<StackResources<{ TASKS + 2 }>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        net,
        RESOURCES.init(StackResources::new()),
        u64::from_le_bytes(seed),
    );
    spawner.spawn(net_task(runner).unwrap());
    let ntp = NTP.parse().unwrap_or(core::net::SocketAddr::new(
        core::net::Ipv4Addr::new(192, 168, 1, 1).into(),
        123,
    ));
    spawner.spawn(userlane_gateway::sntp_task(stack, ntp).unwrap());

    static SETTINGS: StaticCell<Settings> = StaticCell::new();
    let settings = SETTINGS.init(Settings {
        port: PORT,
        secret: SECRET.as_bytes(),
        handshake_timeout: Duration::from_secs(10),
        ping_interval: PING_INTERVAL,
        write_timeout: Duration::from_secs(10),
        close_grace: Duration::from_secs(2),
    });
    let shard = userlane_gateway::shard(lanes::config(PER_USER, IDLE_TIMEOUT_MS));
    userlane_gateway::spawn_gateway(spawner, stack, shard, settings).unwrap();
}
