//! A stream that is polled only when it has been woken.
//!
//! async-graphql's WebSocket keeps a connection's subscription streams in a
//! map and polls every one of them whenever the connection is woken. With
//! 100 subscriptions on a socket, a message for one meant polling the other
//! 99 through their layers of adapters, and that polling was the largest
//! cost of live updates (BENCHMARKS.md). Gated, a stream that nothing woke
//! answers `Pending` after one atomic swap, as `FuturesUnordered` does for
//! its futures.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::{
    Stream, StreamExt,
    task::{ArcWake, AtomicWaker, waker_ref},
};

/// Whether the inner stream asked to be polled, and whom to tell.
#[derive(Debug)]
struct Gate {
    woken: AtomicBool,
    outer: AtomicWaker,
}

impl ArcWake for Gate {
    fn wake_by_ref(gate: &Arc<Self>) {
        gate.woken.store(true, Ordering::Release);
        gate.outer.wake();
    }
}

/// `inner`, polled only after it woke (or returned an item).
#[derive(Debug)]
pub(crate) struct Gated<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> Gated<S> {
    pub(crate) fn new(inner: S) -> Self {
        // Woken to begin with: the first poll reaches the inner stream.
        Self {
            inner,
            gate: Arc::new(Gate { woken: AtomicBool::new(true), outer: AtomicWaker::new() }),
        }
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let Self { inner, gate } = self.get_mut();
        gate.outer.register(cx.waker());
        if !gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = waker_ref(gate);
        let polled = inner.poll_next_unpin(&mut Context::from_waker(&waker));
        if polled.is_ready() {
            // More may be ready without a wake-up: look again next time.
            gate.woken.store(true, Ordering::Release);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures_util::stream;

    use super::*;

    #[tokio::test]
    async fn a_gated_stream_yields_what_its_inner_stream_yields() {
        let items: Vec<u32> = Gated::new(stream::iter(1..=5)).collect().await;
        assert_eq!(items, vec![1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn an_unwoken_stream_is_not_polled_again() {
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let inner = stream::poll_fn(move |cx| {
            counted.fetch_add(1, Ordering::SeqCst);
            receiver.poll_recv(cx)
        });
        let mut gated = Gated::new(inner);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(gated.poll_next_unpin(&mut cx).is_pending());
        for _ in 0..10 {
            assert!(gated.poll_next_unpin(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once, until woken");
        sender.send(7).ok();
        assert_eq!(gated.poll_next_unpin(&mut cx), Poll::Ready(Some(7)));
    }
}
