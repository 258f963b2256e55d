//! The queue of messages waiting for one client, bounded in messages and in bytes.
//!
//! A client that stops reading must not make the proxy hold its messages without bound: when
//! a message does not fit, a sender that cannot wait ([`QueueTx::try_send`]) ends the queue
//! instead. An ended queue drops what it held at once (the memory comes back), its receiver
//! sees the end, and whoever watches [`QueueTx::ended`] ends the client's session.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Outgoing, SendError};

/// How much one client's queue may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub messages: usize,
    pub bytes: usize,
}

struct State {
    items: VecDeque<(Outgoing, usize)>,
    bytes: usize,
    /// Set when the queue ended; the reason is for the log.
    ended: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the receiver.
    arrived: Notify,
    /// Wakes senders waiting for room.
    room: Notify,
    bounds: Bounds,
    /// Cancelled when the queue ends, for whoever must end the session with it.
    ended: CancellationToken,
}

/// The sending side (cheap to clone).
#[derive(Clone)]
pub struct QueueTx(Arc<Shared>);

/// The receiving side.
pub struct QueueRx(Arc<Shared>);

/// A new queue within `bounds`.
pub fn queue(bounds: Bounds) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            ended: None,
        }),
        arrived: Notify::new(),
        room: Notify::new(),
        bounds: Bounds {
            messages: bounds.messages.max(1),
            bytes: bounds.bytes.max(1),
        },
        ended: CancellationToken::new(),
    });
    (QueueTx(shared.clone()), QueueRx(shared))
}

impl Shared {
    /// Queue `o` if it fits: a message always fits an empty queue, so that one larger than
    /// the byte bound (it is within `--max-message-size`) still gets through.
    fn offer(&self, o: Outgoing) -> Result<(), (Outgoing, SendError)> {
        let size = o.msg.wire_len();
        let Ok(mut st) = self.state.lock() else {
            return Err((o, SendError::Closed));
        };
        if st.ended.is_some() {
            return Err((o, SendError::Closed));
        }
        if !st.items.is_empty()
            && (st.items.len() >= self.bounds.messages || st.bytes + size > self.bounds.bytes)
        {
            return Err((o, SendError::Full));
        }
        st.bytes += size;
        st.items.push_back((o, size));
        drop(st);
        self.arrived.notify_one();
        Ok(())
    }

    fn end(&self, why: &str, drop_queued: bool) {
        let dropped = match self.state.lock() {
            Ok(mut st) => {
                if st.ended.is_none() {
                    st.ended = Some(why.to_owned());
                }
                if drop_queued {
                    st.bytes = 0;
                    std::mem::take(&mut st.items)
                } else {
                    VecDeque::new()
                }
            }
            Err(_) => VecDeque::new(),
        };
        drop(dropped);
        self.ended.cancel();
        self.arrived.notify_one();
        self.room.notify_waiters();
    }
}

impl QueueTx {
    /// Hand over a message without waiting. A message that does not fit ends the queue (the
    /// client is not reading): what it held is dropped and the session is to end.
    pub fn try_send(&self, o: Outgoing) -> Result<(), SendError> {
        match self.0.offer(o) {
            Ok(()) => Ok(()),
            Err((_, SendError::Full)) => {
                let b = self.0.bounds;
                self.0.end(
                    &format!(
                        "the client is not reading its messages (more than {} messages or {} bytes waiting)",
                        b.messages, b.bytes
                    ),
                    true,
                );
                Err(SendError::Full)
            }
            Err((_, e)) => Err(e),
        }
    }

    /// Hand over a message, waiting for room; `Err` once the queue has ended.
    pub async fn send(&self, mut o: Outgoing) -> Result<(), ()> {
        loop {
            let room = self.0.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.0.offer(o) {
                Ok(()) => return Ok(()),
                Err((_, SendError::Closed)) => return Err(()),
                Err((back, SendError::Full)) => o = back,
            }
            room.await;
        }
    }

    /// End the queue: the receiver gets what is queued, then the end.
    pub fn close(&self) {
        self.0.end("closed", false);
    }

    /// Fires when the queue ends, by [`QueueTx::close`] or because it overflowed.
    pub fn ended(&self) -> CancellationToken {
        self.0.ended.clone()
    }

    /// Why the queue ended, if it did.
    pub fn end_reason(&self) -> Option<String> {
        self.0.state.lock().ok()?.ended.clone()
    }
}

impl QueueRx {
    /// The next message; `None` once the queue has ended and is empty.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let shared = self.0.clone();
        loop {
            let arrived = shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(o) = self.try_recv() {
                return Some(o);
            }
            if shared.state.lock().ok()?.ended.is_some() {
                return None;
            }
            arrived.await;
        }
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let (o, size) = {
            let mut st = self.0.state.lock().ok()?;
            let (o, size) = st.items.pop_front()?;
            st.bytes -= size;
            (o, size)
        };
        if size > 0 {
            self.0.room.notify_waiters();
        }
        Some(o)
    }

    /// Stop receiving: senders get `Closed` from now on.
    pub fn close(&mut self) {
        self.0.end("the client went away", true);
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        self.0.end("the client went away", true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{Id, Message, to_raw};

    fn msg(bytes: usize) -> Outgoing {
        let text = "x".repeat(bytes);
        Outgoing::new(
            Message::response(Id::number(1), to_raw(&serde_json::json!({ "t": text }))),
            None,
        )
    }

    #[tokio::test]
    async fn bytes_bound_ends_the_queue_and_frees_it() {
        let (tx, mut rx) = queue(Bounds {
            messages: 100,
            bytes: 10_000,
        });
        // One message larger than the bound passes an empty queue.
        tx.try_send(msg(20_000)).unwrap();
        assert!(matches!(tx.try_send(msg(10)), Err(SendError::Full)));
        assert!(tx.ended().is_cancelled());
        assert!(tx.end_reason().unwrap().contains("not reading"));
        // What it held is gone; the receiver sees the end.
        assert!(rx.recv().await.is_none());
        assert!(matches!(tx.try_send(msg(1)), Err(SendError::Closed)));
    }

    #[tokio::test]
    async fn waiting_senders_get_room_as_the_receiver_reads() {
        let (tx, mut rx) = queue(Bounds {
            messages: 2,
            bytes: 1 << 20,
        });
        tx.try_send(msg(1)).unwrap();
        tx.try_send(msg(1)).unwrap();
        let sender = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(msg(1)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!sender.is_finished());
        assert!(rx.recv().await.is_some());
        assert_eq!(sender.await.unwrap(), Ok(()));
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        tx.close();
        assert!(rx.recv().await.is_none());
    }
}
