//! Writes a call's commands to its socket with the carrier's codec: whatever
//! is queued goes out in one flush, every write within a deadline.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::SinkExt;
use hark_actors::{Command, EndReason};
use hark_carrier::port::{Outgoing, StreamCodec};
use tokio::sync::mpsc;

/// Writes the call's commands with the carrier's codec.
pub(super) struct Writer<C> {
    pub(super) codec: C,
    /// A close frame was sent: nothing more goes out.
    pub(super) closed: bool,
}

impl<C: StreamCodec> Writer<C> {
    pub(super) fn new(codec: C) -> Self {
        Self {
            codec,
            closed: false,
        }
    }

    fn encode(&mut self, command: Command) -> Message {
        match self.codec.encode(command) {
            Outgoing::Text(text) => Message::Text(text.into()),
            Outgoing::Binary(bytes) => Message::Binary(bytes),
            Outgoing::Close { code, reason } => {
                self.closed = true;
                Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }))
            }
        }
    }

    /// [`Writer::write_batch`] within `limit`. A socket that takes longer is
    /// stuck (a peer that stopped reading): nothing more goes out on it.
    pub(super) async fn write_within<S>(
        &mut self,
        socket: &mut S,
        first: Command,
        rx: &mut mpsc::Receiver<Command>,
        limit: Duration,
    ) -> Result<(), EndReason>
    where
        S: futures::Sink<Message> + Unpin,
    {
        match tokio::time::timeout(limit, self.write_batch(socket, first, rx)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EndReason::SocketClosed),
            Err(_) => {
                self.closed = true;
                Err(EndReason::OutboundStalled)
            }
        }
    }

    /// Writes `first` and whatever else is already queued, then flushes once.
    pub(super) async fn write_batch<S>(
        &mut self,
        socket: &mut S,
        first: Command,
        rx: &mut mpsc::Receiver<Command>,
    ) -> Result<(), S::Error>
    where
        S: futures::Sink<Message> + Unpin,
    {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            let msg = self.encode(out);
            socket.feed(msg).await?;
            if self.closed {
                break;
            }
            next = rx.try_recv().ok();
        }
        socket.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hark_carrier::twilio::TwilioStream;
    use tokio::time::Instant;

    use super::*;

    /// A socket whose peer stopped reading: it never takes another message.
    struct Stuck;

    impl futures::Sink<Message> for Stuck {
        type Error = axum::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_to_a_socket_nobody_reads_times_out_and_ends_the_call() {
        let mut writer = Writer::new(TwilioStream::new());
        let (_tx, mut rx) = mpsc::channel(4);
        let began = Instant::now();
        let r = writer
            .write_within(&mut Stuck, Command::Clear, &mut rx, Duration::from_secs(5))
            .await;
        assert_eq!(r, Err(EndReason::OutboundStalled));
        assert_eq!(began.elapsed(), Duration::from_secs(5));
        assert!(
            writer.closed,
            "nothing more may be written to a stuck socket"
        );
    }
}
