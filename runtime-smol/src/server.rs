//! `Server`: binds the listener and runs the accept loop; each accepted
//! socket gets its own task.

use std::net::{SocketAddr, TcpListener};

use std::sync::Arc;
use std::time::Duration;

use smol::Async;

use crate::auth::{Authenticator, JwtAuthenticator};
use crate::clock::Clock;
use crate::config::{ConfigError, ServerConfig};
use crate::handle::ServerHandle;
use crate::handler::{App, Handler, IgnoreInbound};
use crate::service::{HttpService, NoHttp};
use crate::shards::{run_events, run_timer, ShardSlot, Shards};
use crate::state::{bump, Counters, Lifecycle, ServerShared};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Redis URL is unusable.
    #[error("cannot use the cluster: {0}")]
    Cluster(crate::cluster::ClusterError),
    /// Binding the listener failed.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    config: ServerConfig,
    authenticator: Option<Arc<dyn Authenticator>>,
    handler: Arc<dyn Handler>,
    http: Arc<dyn HttpService>,
}

impl ServerBuilder {
    /// Answers plain HTTP requests on the same port (default: 404).
    pub fn http(mut self, service: impl HttpService) -> Self {
        self.http = Arc::new(service);
        self
    }

    /// Uses `authenticator` instead of the built-in HS256 one (which needs
    /// `jwt_secret`). Production and staging accept either.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Where inbound messages go (default: ignored).
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// Validates the configuration, builds the shards and binds `addr`.
    pub fn bind(self, addr: SocketAddr) -> Result<Server, StartError> {
        let config = self.config;
        let authenticator = match (self.authenticator, &config.jwt_secret) {
            (Some(a), _) => Some(a),
            (None, Some(secret)) => {
                Some(Arc::new(JwtAuthenticator::from_config(secret, &config))
                    as Arc<dyn Authenticator>)
            }
            (None, None) => None,
        };
        if authenticator.is_some() && config.jwt_secret.is_none() {
            // A custom authenticator satisfies the production requirement.
            let mut probe = config.clone();
            probe.jwt_secret = Some(vec![0; 16]);
            probe.validate()?;
        } else {
            config.validate()?;
        }
        let slots = (0..config.shards)
            .map(|i| ShardSlot::build(config.core_config(i)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::Core)?;
        let cluster = match &config.cluster {
            Some(c) => Some(crate::cluster::Cluster::new(c.clone()).map_err(StartError::Cluster)?),
            None => None,
        };
        let listener = Async::<TcpListener>::bind(addr)?;
        let local_addr = listener.get_ref().local_addr()?;
        let (lifecycle, tasks_tx) = Lifecycle::new();
        let shared = Arc::new(ServerShared {
            config,
            shards: Arc::new(Shards { slots }),
            clock: Clock::new(),
            authenticator,
            cluster,
            counters: Counters::default(),
            refusal_log: Default::default(),
            echo_open: Default::default(),
            admitting: std::sync::Mutex::new(()),
            lifecycle,
        });
        let app = Arc::new(App {
            handler: self.handler,
            http: self.http,
        });
        Ok(Server {
            shared,
            app,
            listener,
            local_addr,
            tasks_tx,
        })
    }
}

/// A bound WebSocket server. Get a [`ServerHandle`] with [`Server::handle`],
/// then drive it with [`Server::run`] (for example `smol::block_on(server.run())`).
/// Connection tasks run on smol's global executor (`SMOL_THREADS` threads).
pub struct Server {
    shared: Arc<ServerShared>,
    app: Arc<App>,
    listener: Async<TcpListener>,
    local_addr: SocketAddr,
    tasks_tx: smol::channel::Sender<()>,
}

impl Server {
    /// A builder for a server with `config`.
    pub fn builder(config: ServerConfig) -> ServerBuilder {
        ServerBuilder {
            config,
            authenticator: None,
            handler: Arc::new(IgnoreInbound),
            http: Arc::new(NoHttp),
        }
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for application code.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Accepts connections until [`ServerHandle::shutdown`] is called, then
    /// returns once every connection task has finished. Accept errors (such
    /// as the open-file limit) are logged and retried after a short pause.
    pub async fn run(self) {
        let Server {
            shared,
            app,
            listener,
            tasks_tx,
            ..
        } = self;
        crate::compat::install(&ServerHandle {
            shared: shared.clone(),
        });
        let background = spawn_background(&shared);
        let tables = shared.shards.slots[0].core.capacity();
        log::info!(
            "userlane listening on {} ({} mode, {} shard(s) with tables for {} users and {} connections each)",
            listener
                .get_ref()
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            shared.config.environment,
            shared.shards.slots.len(),
            tables.users,
            tables.connections
        );
        accept_loop(&shared, &app, &listener, &tasks_tx).await;
        shared.lifecycle.stop_accepting();
        drop(listener);
        drop(tasks_tx);
        // Wait for the connection tasks (shutdown drives them to the end).
        shared.lifecycle.all_tasks_done().await;
        drop(background);
        crate::compat::uninstall(&shared);
        log::info!("userlane stopped");
    }
}

/// Starts the server's background tasks: each shard's timer and event
/// readers, the refusal log's flush and, in a cluster, the subscriber and the
/// lease refresh. They end when the returned tasks are dropped.
fn spawn_background(shared: &Arc<ServerShared>) -> Vec<smol::Task<()>> {
    let mut background: Vec<smol::Task<()>> = shared
        .shards
        .slots
        .iter()
        .enumerate()
        .flat_map(|(i, slot)| {
            [
                smol::spawn(run_timer(slot.core.clone(), shared.clock)),
                smol::spawn(run_events(shared.shards.clone(), i)),
            ]
        })
        .collect();
    let flushing = shared.clone();
    background.push(smol::spawn(async move {
        loop {
            smol::Timer::after(crate::bounded::REFUSAL_LOG_WINDOW).await;
            flushing.refusal_log.flush();
        }
    }));
    if let Some(cluster) = &shared.cluster {
        let handle = ServerHandle {
            shared: shared.clone(),
        };
        background.push(smol::spawn(
            cluster
                .clone()
                .run_subscriber(move |user, env| handle.apply_remote(user, env)),
        ));
        background.push(smol::spawn(crate::cluster::refresh_leases_forever(
            cluster.clone(),
        )));
        log::info!(
            "node {} joins the cluster at {}",
            cluster.node_id(),
            cluster.config.redis_url
        );
    }
    background
}

/// Accepts sockets until shutdown stops it; each socket gets its own task.
/// Accept errors (such as the open-file limit) are logged and retried after
/// a short pause.
async fn accept_loop(
    shared: &Arc<ServerShared>,
    app: &Arc<App>,
    listener: &Async<TcpListener>,
    tasks_tx: &smol::channel::Sender<()>,
) {
    loop {
        let accepted = smol::future::or(async { Some(listener.accept().await) }, async {
            shared.lifecycle.accepting_stopped().await;
            None
        })
        .await;
        let Some(accepted) = accepted else { break };
        match accepted {
            Ok((stream, remote)) => {
                bump(&shared.counters.tcp_accepted);
                let _ = stream.get_ref().set_nodelay(true);
                smol::spawn(crate::connection::serve(
                    shared.clone(),
                    app.clone(),
                    stream,
                    remote,
                    tasks_tx.clone(),
                ))
                .detach();
            }
            Err(e) => {
                bump(&shared.counters.accept_errors);
                log::warn!("accept failed: {e}; retrying in 50 ms");
                smol::Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
}
