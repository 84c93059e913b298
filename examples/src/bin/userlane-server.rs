//! `userlane-server`: the example server. `cargo run --release -p
//! userlane-examples --bin userlane-server` starts it in development mode on
//! 127.0.0.1:9600; `--help` lists every setting.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use userlane_examples::server::agent::{Agent, AgentStats};
use userlane_examples::server::api::Api;
use userlane_examples::server::cli::Args;
use userlane_examples::server::health::Health;
use userlane_examples::server::tokens::ephemeral_secret;
use userlane_smol::{Environment, Server};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
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
    let dev_secret = match (&secret, args.environment) {
        (Some(s), Environment::Development) => Some(s.clone()),
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
    let agent = Agent {
        stats: agent_stats.clone(),
        step: Duration::from_millis(args.agent_step_ms),
        environment: config.environment.to_string(),
        max_message_size: config.max_message_bytes,
        heartbeat_interval: config.ping_interval.as_secs(),
    };
    let api = Api {
        environment: config.environment,
        service_token,
        dev_secret,
        max_message_bytes: config.max_message_bytes,
        agent: agent_stats,
        health: Arc::new(Health::starting_now()),
    };
    let server = Server::builder(config)
        .handler(agent)
        .http(api)
        .bind(args.listen)
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr();
    let handle = server.handle();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    let serving = std::thread::spawn(move || smol::block_on(server.run()));
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
