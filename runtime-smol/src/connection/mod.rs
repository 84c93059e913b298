//! One task per connection: handshake, then a reader and a writer that never
//! block each other, until the socket or the core ends the connection.

mod admitted;
mod closing;
mod conn;
mod core_close;
mod deadline;
mod handshake;
mod life;
mod open;
mod reader;
mod request;
mod timers;
mod upgrade;
mod writer;

use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use smol::Async;

use crate::handle::ServerHandle;
use crate::handler::App;
use crate::state::{bump, ServerShared};

use open::{open, Opened};

/// Serves one accepted socket from handshake to release. `_task` is dropped
/// when the task ends, which lets shutdown know every connection is gone.
pub(crate) async fn serve(
    shared: Arc<ServerShared>,
    app: Arc<App>,
    socket: Async<TcpStream>,
    remote: SocketAddr,
    _task: smol::channel::Sender<()>,
) {
    // The request deadline counts from the accept.
    let deadline = std::time::Instant::now() + shared.config.request_timeout;
    // Boxed: the handshake's state (request head, admission, upgrade, the
    // plain-HTTP path) is freed once the connection is open instead of
    // staying in the task for the connection's whole life.
    let (conn, admission) = match Box::pin(open(&shared, &app, socket, remote, deadline)).await {
        None => return,
        Some(Opened::Echo(ws, slot)) => {
            Box::pin(crate::echo::serve(&shared, *ws)).await;
            drop(slot);
            return;
        }
        Some(Opened::Conn(conn, admission)) => (conn, admission),
    };
    // Shutdown raises KILL on the connections in the registry; one
    // registered after that pass finds the channel already closed.
    let forced = shared.lifecycle.is_killed() || conn.await;
    if forced {
        bump(&shared.counters.forced_closes);
    }
    // Gives back the core slot, the registry entry and the cluster's lease
    // and subscription, before the application hears of the disconnect.
    let info = admission.info.clone();
    drop(admission);
    let handle = ServerHandle {
        shared: shared.clone(),
    };
    if catch_unwind(AssertUnwindSafe(|| {
        app.handler.on_disconnect(&handle, &info)
    }))
    .is_err()
    {
        bump(&shared.counters.handler_panics);
    }
}
