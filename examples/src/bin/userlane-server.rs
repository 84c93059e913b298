//! `userlane-server`: the example server. `cargo run --release -p
//! userlane-examples --bin userlane-server` starts it in development mode on
//! 127.0.0.1:9600; `--help` lists every setting.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use userlane_examples::server::agent::{Agent, AgentStats, Runs};
use userlane_examples::server::api::{Api, Surface};
use userlane_examples::server::cli::Args;
use userlane_examples::server::health::Health;
use userlane_examples::server::ops::{self, OpsListen};
use userlane_examples::server::tokens::ephemeral_secret;
use userlane_smol::{Environment, Server};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse_explicit();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("userlane-server: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if std::env::var_os("SMOL_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("SMOL_THREADS", cores.to_string());
    }
    let mut secret = args.jwt_secret()?;
    args.check_secret_has_environment(secret.is_some())?;
    // /dev/token never signs with a configured secret: with one, it is off.
    let dev_secret = match (&secret, args.environment) {
        (Some(_), Environment::Development) => {
            log::info!("development with a configured JWT secret: POST /dev/token is disabled");
            None
        }
        (None, Environment::Development) => {
            log::warn!("development: no USERLANE_JWT_SECRET; using a random secret for this process only (tokens from /dev/token)");
            let s = ephemeral_secret();
            secret = Some(s.clone());
            Some(s)
        }
        _ => None,
    };
    let config = args.server_config(secret)?;
    let service_token = std::env::var("USERLANE_SERVICE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if service_token.is_none() {
        log::warn!(
            "USERLANE_SERVICE_TOKEN is not set: the service API (/api/…) answers 401 to everyone"
        );
    }
    let agent_stats = Arc::new(AgentStats::default());
    let health = Arc::new(Health::starting_now());
    health
        .memory
        .limit_percent
        .store(args.memory_spike_percent, Ordering::Relaxed);
    let ops_listen = args.ops_listen();
    let memory = health.memory.clone();
    let agent = Agent {
        stats: agent_stats.clone(),
        step: Duration::from_millis(args.agent_step_ms),
        environment: config.environment.to_string(),
        max_message_size: config.max_message_bytes,
        heartbeat_interval: config.ping_interval.as_secs(),
        runs_per_user: args.agent_runs_per_user,
        runs_total: args.agent_runs_total,
        runs: Arc::new(Runs::default()),
        users: health.users.clone(),
    };
    let api = Api {
        environment: config.environment,
        surface: if ops_listen == OpsListen::Public {
            Surface::PublicWithOps
        } else {
            Surface::Public
        },
        service_token,
        dev_secret,
        max_message_bytes: config.max_message_bytes,
        max_batch_items: args.max_batch_items as usize,
        max_batch_bytes: args.max_batch_bytes as usize,
        agent: agent_stats,
        health,
    };
    let ops_api = Arc::new(Api {
        surface: Surface::Ops,
        dev_secret: None,
        service_token: None,
        ..api.clone()
    });
    let ops_listener = match ops_listen {
        OpsListen::Addr(a) => Some(ops::bind(a)?),
        OpsListen::Public | OpsListen::Off => None,
    };
    let server = Server::builder(config)
        .handler(agent)
        .http(api)
        .bind(args.listen)
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr();
    let handle = server.handle();
    if let Some(listener) = ops_listener {
        let ops_addr = listener.get_ref().local_addr().map_err(|e| e.to_string())?;
        smol::spawn(ops::serve(listener, ops_api, handle.clone())).detach();
        println!("operational endpoints (/metrics, /healthz) on http://{ops_addr}");
    } else if ops_listen == OpsListen::Off {
        println!("operational endpoints are off (--ops-listen off)");
    }
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    let serving = std::thread::spawn(move || smol::block_on(server.run()));
    memory.take_baseline_over(Duration::from_secs(args.memory_baseline_secs));
    println!("userlane-server ({}) listening on {addr}", args.environment);
    println!("open http://{addr}/ in a browser; Ctrl-C to stop");
    let _ = stop_rx.recv();
    log::info!("shutting down: closing every connection with 1001");
    let report = smol::block_on(handle.shutdown(Duration::from_secs(5)));
    let _ = serving.join();
    log::info!(
        "stopped: {} connection(s) closed, {} forced, {} message(s) undelivered",
        report.closing,
        report.forced,
        report.undelivered
    );
    Ok(())
}
