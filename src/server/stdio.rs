//! Our own stdin/stdout as the client's wire: one session, newline-delimited JSON-RPC.

use tokio::io::BufReader;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{Message, code};
use crate::route::{Backend, Outgoing, SESSION_QUEUE, SessionTx};
use crate::transport::stdio::{Line, own_stdin, own_stdout, read_line, write_lines};

/// Serve one client on stdin/stdout until stdin ends or `shutdown` fires.
pub async fn serve(backend: Backend, max_message_size: usize, shutdown: CancellationToken) {
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
    let route = match backend.open(SessionTx::Queue(out_tx)).await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    };
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
