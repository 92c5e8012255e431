//! Letting go of clients that vanished without closing (a laptop lid, a
//! mobile network change): every socket is pinged each `interval`, and one
//! that sends nothing back within `timeout` of a ping is closed, releasing
//! its subscriptions. Any frame counts as an answer; browsers and WebSocket
//! libraries answer pings by themselves. A send that cannot complete within
//! the same window (a client that stopped reading) ends the socket too.

use std::{pin::Pin, time::Duration};

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};
use tokio::time::{Instant, Sleep};

/// What [`Keepalive::due`] found due.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Send a ping now.
    Ping,
    /// Nothing came back within the timeout of a ping: close.
    Silent,
}

/// One socket's pings and the silence since the first unanswered one.
#[derive(Debug)]
pub(super) struct Keepalive {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    /// Set by a ping while nothing has come back since.
    answer_by: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl Keepalive {
    pub(super) fn new(interval: Duration, timeout: Duration) -> Self {
        let next_ping = Instant::now() + interval;
        Self {
            interval,
            timeout,
            next_ping,
            answer_by: None,
            timer: Box::pin(tokio::time::sleep_until(next_ping)),
        }
    }

    /// The client sent something: it is there.
    pub(super) fn heard(&mut self) {
        self.answer_by = None;
    }

    /// Waits for the next ping or for the end of the client's grace
    /// (cancel-safe: nothing changes unless it completes).
    pub(super) async fn due(&mut self) -> Due {
        let at = self.answer_by.map_or(self.next_ping, |by| by.min(self.next_ping));
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
        self.timer.as_mut().await;
        let now = Instant::now();
        if self.answer_by.is_some_and(|by| by <= now) {
            return Due::Silent;
        }
        self.next_ping = now + self.interval;
        self.answer_by.get_or_insert(now + self.timeout);
        Due::Ping
    }

    /// Sends `frame`; `false` when the socket is gone or the client has not
    /// taken it within a ping's interval and timeout (it stopped reading).
    pub(super) async fn send(
        &self,
        sink: &mut (impl Sink<Message> + Unpin),
        frame: Message,
    ) -> bool {
        let sent = tokio::time::timeout(self.interval + self.timeout, sink.send(frame)).await;
        matches!(sent, Ok(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(15);
    const TIMEOUT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_pinged_then_let_go_after_the_timeout() {
        let started = Instant::now();
        let mut keepalive = Keepalive::new(INTERVAL, TIMEOUT);
        assert_eq!(keepalive.due().await, Due::Ping);
        assert_eq!(started.elapsed(), INTERVAL);
        assert_eq!(keepalive.due().await, Due::Silent);
        assert_eq!(started.elapsed(), INTERVAL + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn any_answer_keeps_a_client_connected() {
        let started = Instant::now();
        let mut keepalive = Keepalive::new(INTERVAL, TIMEOUT);
        for round in 1..=5u32 {
            assert_eq!(keepalive.due().await, Due::Ping);
            assert_eq!(started.elapsed(), INTERVAL * round);
            tokio::time::advance(Duration::from_secs(1)).await;
            keepalive.heard();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pings_go_on_while_an_answer_is_awaited_past_the_interval() {
        let started = Instant::now();
        let mut keepalive = Keepalive::new(Duration::from_secs(1), Duration::from_secs(3));
        for _ in 0..3 {
            assert_eq!(keepalive.due().await, Due::Ping);
        }
        assert_eq!(keepalive.due().await, Due::Silent);
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }
}
