//! The HTTP listener: accepts connections within a cap, serves HTTP/1.1 on each, and stops
//! without waiting on any client.
//!
//! - Every accepted socket gets `TCP_NODELAY`: SSE events and answers are small writes that
//!   must not wait for the client's delayed acknowledgement.
//! - At most `--max-connections` connections at once. At the cap, a new connection takes the
//!   place of the oldest one that has not sent a whole request yet (a stalled, slowloris-style
//!   connection); when every connection has, the new one waits in the kernel's backlog.
//! - A request's headers must arrive within `--header-timeout` (also the longest a kept-alive
//!   connection may sit idle), so stalled connections are closed.
//! - On shutdown: stop accepting, let connections finish their requests for
//!   `--shutdown-timeout`, then close whatever is left, also a client that stopped reading.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The address a request came from (an extension of every request).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// One open connection, as the cap sees it.
struct Conn {
    /// Set once a whole request head has arrived.
    proven: AtomicBool,
    /// Closes the connection.
    evict: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Open {
    next: u64,
    conns: BTreeMap<u64, Arc<Conn>>,
}

impl Open {
    /// Close the oldest connection that has not sent a whole request; whether there was one.
    fn evict_stalled(&mut self) -> bool {
        let Some((&id, _)) = self
            .conns
            .iter()
            .find(|(_, c)| !c.proven.load(Ordering::Relaxed) && !c.evict.is_cancelled())
        else {
            return false;
        };
        if let Some(c) = self.conns.remove(&id) {
            c.evict.cancel();
        }
        true
    }
}

/// Serve `app` on `listener` until `shutdown`; then close every connection within
/// `shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ListenOptions,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let tracker = TaskTracker::new();
    // Told to finish: no new requests on kept-alive connections.
    let finish = CancellationToken::new();
    // Told to stop: connections are dropped as they are.
    let stop = CancellationToken::new();
    let open: Arc<Mutex<Open>> = Default::default();
    let mut full_logged = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                let evicted = open.lock().map(|mut o| o.evict_stalled()).unwrap_or(false);
                if !full_logged {
                    tracing::warn!(
                        "{} connections open (--max-connections); {}",
                        options.max_connections,
                        if evicted {
                            "closing the oldest that never sent a request"
                        } else {
                            "new ones wait"
                        }
                    );
                    full_logged = true;
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was taken: the
                // listener goes on after a breath.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if slots.available_permits() > 0 {
            full_logged = false;
        }
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            proven: AtomicBool::new(false),
            evict: CancellationToken::new(),
        });
        let id = match open.lock() {
            Ok(mut o) => {
                o.next += 1;
                let id = o.next;
                o.conns.insert(id, conn.clone());
                id
            }
            Err(_) => 0,
        };
        let proven = conn.clone();
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: http::Request<hyper::body::Incoming>| {
                proven.proven.store(true, Ordering::Relaxed);
                req.extensions_mut().insert(Peer(peer));
                req
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(app);
        let finish = finish.clone();
        let stop = stop.clone();
        let header_timeout = options.header_timeout;
        let open = open.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let _forget = Forget { open, id };
            let evict = conn.evict.clone();
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("connection ended: {e}");
                    }
                    return;
                }
                _ = evict.cancelled() => return,
                _ = finish.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    drop(listener);
    finish.cancel();
    tracker.close();
    if tokio::time::timeout(options.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::info!(
            "closing {} connection(s) still open after {}s (--shutdown-timeout)",
            tracker.len(),
            options.shutdown_timeout.as_secs()
        );
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    }
}

/// Takes a connection off the open list when its task ends.
struct Forget {
    open: Arc<Mutex<Open>>,
    id: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Ok(mut o) = self.open.lock() {
            o.conns.remove(&self.id);
        }
    }
}
