//! Our own stdin/stdout as the client's wire: one session, newline-delimited JSON-RPC.

use tokio::io::BufReader;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::era::front::ModernFront;
use crate::jsonrpc::{Id, Message, code};
use crate::route::{Backend, Outgoing, SESSION_QUEUE, SessionTx};
use crate::transport::stdio::{Line, own_stdin, own_stdout, read_line, write_lines};

/// Serve one client on stdin/stdout until stdin ends or `shutdown` fires.
pub async fn serve(
    backend: Backend,
    curation: Option<crate::curation::Curation>,
    modern: Arc<ModernFront>,
    max_message_size: usize,
    shutdown: CancellationToken,
) {
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(SESSION_QUEUE);
    let (line_tx, line_rx) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(write_lines(own_stdout(), line_rx, |_, e| {
        tracing::debug!("stdout closed: {e}");
    }));
    let forward_tx = line_tx.clone();
    let forward = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            if forward_tx.send(o.msg).await.is_err() {
                return;
            }
        }
    });
    let route = match backend
        .open_curated(SessionTx::Queue(out_tx), curation.as_ref())
        .await
    {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    };
    // Requests of 2026-07-28 clients in flight, by id, so that a cancellation can end them.
    let modern_calls: Arc<Mutex<HashMap<Id, tokio::task::AbortHandle>>> = Default::default();
    let mut stdin = BufReader::with_capacity(64 * 1024, own_stdin());
    loop {
        let line = tokio::select! {
            l = read_line(&mut stdin, max_message_size) => l,
            _ = shutdown.cancelled() => break,
        };
        let bytes = match line {
            Ok(Some(Line::Data(b))) => b,
            Ok(Some(Line::TooLong(n))) => {
                let m = Message::error(
                    crate::jsonrpc::Id::null(),
                    code::MESSAGE_TOO_LARGE,
                    &format!(
                        "message of {n} bytes exceeds --max-message-size ({max_message_size})"
                    ),
                    None,
                );
                let _ = line_tx.send(m).await;
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("reading stdin: {e}");
                break;
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let messages = match Message::parse(&bytes) {
            Ok(p) => p.into_messages(),
            Err(e) => {
                let _ = line_tx.send(e.to_response()).await;
                continue;
            }
        };
        for msg in messages {
            if is_modern(&msg) {
                serve_modern(&modern, msg, &line_tx, &modern_calls).await;
                continue;
            }
            if msg.method() == Some("notifications/cancelled")
                && let Some(id) = msg.cancelled_request_id()
                && let Some(call) = modern_calls.lock().ok().and_then(|mut c| c.remove(&id))
            {
                call.abort();
                continue;
            }
            match &route {
                Some(r) => r.send(msg).await,
                None => {
                    if let Some(answer) =
                        crate::transport::undeliverable(&msg, "the server could not be started")
                    {
                        let _ = line_tx.send(answer).await;
                    }
                }
            }
        }
    }
    tracing::debug!("client input ended");
    if let Some(r) = route {
        r.close().await;
    }
    drop(line_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), forward).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}

/// A request of the stateless revision: it says so in its `_meta`, or it is the
/// `server/discover` probe.
fn is_modern(msg: &Message) -> bool {
    msg.is_request()
        && (msg.method() == Some("server/discover")
            || crate::era::RequestMeta::of(msg)
                .version
                .is_some_and(|v| crate::era::is_modern(&v)))
}

/// Answer one modern request on its own task; its messages go to stdout as they come.
async fn serve_modern(
    front: &Arc<ModernFront>,
    msg: Message,
    line_tx: &mpsc::Sender<Message>,
    calls: &Arc<Mutex<HashMap<Id, tokio::task::AbortHandle>>>,
) {
    let id = msg.id().unwrap_or_else(Id::null);
    let meta = match crate::era::validate(&msg, &crate::era::Headers::default()) {
        Ok(m) => m,
        Err(refusal) => {
            let _ = line_tx.send(refusal.to_message(id)).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let out = line_tx.clone();
    let relay = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if out.send(m).await.is_err() {
                return;
            }
        }
    });
    let front = front.clone();
    let registry = calls.clone();
    let key = id.clone();
    let task = tokio::spawn(async move {
        front.handle(msg, meta, tx).await;
        if let Ok(mut c) = registry.lock() {
            c.remove(&key);
        }
    });
    if let Ok(mut c) = calls.lock() {
        c.insert(id, task.abort_handle());
    }
    drop(relay);
}
