//! The request deadline: a step bounded by it (or by shutdown's), and the
//! answer when it passes.

use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use smol::{Async, Timer};

use crate::http::{HttpResponse, Phase};
use crate::state::{bump, ServerShared};

/// How a step bounded by the request deadline ended.
pub(super) enum Bounded<T> {
    Done(T),
    TimedOut,
    Killed,
}

/// Runs `step` until it ends, the request deadline passes, or shutdown's
/// deadline drops every connection.
pub(super) async fn bounded<T>(
    shared: &ServerShared,
    deadline: std::time::Instant,
    step: impl Future<Output = T>,
) -> Bounded<T> {
    smol::future::or(
        async { Bounded::Done(step.await) },
        smol::future::or(
            async {
                Timer::at(deadline).await;
                Bounded::TimedOut
            },
            async {
                shared.lifecycle.killed().await;
                Bounded::Killed
            },
        ),
    )
    .await
}

/// The request deadline passed: counted, and answered with 408 when the
/// request was still being read (504 when the service was answering) and
/// nothing was written yet; then the socket is closed.
pub(super) async fn timed_out(
    shared: &ServerShared,
    remote: SocketAddr,
    socket: &mut Async<TcpStream>,
    phase: Phase,
) {
    bump(&shared.counters.requests_timed_out);
    let answer = match phase {
        Phase::Reading => HttpResponse::text(408, "request deadline passed\n"),
        // The service may already have acted on the request (a message
        // queued): say so, so that a client does not retry blindly.
        Phase::Answering => HttpResponse::text(
            504,
            "request deadline passed while answering; the request may have been applied\n",
        ),
        Phase::Written => return,
    };
    shared.refusal_log.info(408, || {
        format!("request from {remote} passed the request deadline; socket closed")
    });
    // Bounded: a peer that does not read must not hold the socket either.
    let bytes = answer.encode();
    let write = smol::io::AsyncWriteExt::write_all(socket, &bytes);
    let _ = smol::future::or(async { write.await.is_ok() }, async {
        Timer::after(Duration::from_millis(100)).await;
        false
    })
    .await;
}
