//! A [`Session`] over Server-Sent Events or a WebSocket.
//!
//! Both carry the same JSON frames. SSE names each event by its type and
//! gives it its `id` (so a browser's `EventSource` resumes with
//! `Last-Event-ID` by itself); the end is an `end` event, after which the
//! response ends. A WebSocket sends each frame as a text message and ends
//! with a close frame whose code and reason say why; what the client
//! sends is read only for pings and its own close.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use bff_telemetry::names;
use futures::{SinkExt, StreamExt};

use crate::session::{EndReason, Frame, Outgoing, Session, end_frame};

/// The largest message a client may send on a live WebSocket: it has
/// nothing to say beyond a ping or a close.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// Counts a stream as open (by transport) until dropped.
struct Open(metrics::Gauge);

impl Open {
    fn new(transport: &'static str) -> Self {
        let gauge = metrics::gauge!(names::LIVE_STREAMS, "transport" => transport);
        gauge.increment(1.0);
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

fn sse_event(frame: &Frame) -> SseEvent {
    let event = SseEvent::default().event(frame.kind).data(&*frame.json);
    match frame.id {
        Some(id) => event.id(id.to_string()),
        None => event,
    }
}

/// Serves `session` as `text/event-stream`.
pub fn sse<K>(mut session: Session<K>) -> Response
where
    K: Eq + std::hash::Hash + Send + Sync + 'static,
{
    session.set_transport("sse");
    let open = Open::new("sse");
    let stream = futures::stream::unfold((session, open), |(mut session, open)| async move {
        let event = match session.next().await? {
            Outgoing::Closed(reason) => {
                // Reconnect after a second or so, spread out so a
                // drained replica's clients do not all come back at once.
                let retry = Duration::from_millis(1000 + rand::random::<u64>() % 2000);
                sse_event(&end_frame(reason)).retry(retry)
            }
            out => match out.frame() {
                Some(frame) => sse_event(frame),
                None => return None,
            },
        };
        Some((Ok::<_, Infallible>(event), (session, open)))
    });
    let mut response = Sse::new(stream).into_response();
    // Tell buffering proxies (nginx) to pass events through at once.
    response
        .headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    response
}

/// Upgrades to a WebSocket and serves `session` on it.
pub fn websocket<K>(upgrade: WebSocketUpgrade, mut session: Session<K>) -> Response
where
    K: Eq + std::hash::Hash + Send + Sync + 'static,
{
    session.set_transport("websocket");
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve_socket(socket, session))
}

async fn serve_socket<K>(socket: WebSocket, mut session: Session<K>)
where
    K: Eq + std::hash::Hash + Send + Sync + 'static,
{
    let _open = Open::new("websocket");
    let write_timeout = session.write_timeout();
    let (mut sink, mut incoming) = socket.split();
    let end = loop {
        tokio::select! {
            out = session.next() => {
                let Some(out) = out else { return };
                let message = match &out {
                    Outgoing::Closed(reason) => break Some(*reason),
                    other => match other.frame() {
                        Some(frame) => Message::Text(frame.json.as_ref().into()),
                        None => return,
                    },
                };
                match tokio::time::timeout(write_timeout, sink.send(message)).await {
                    Ok(Ok(())) => {}
                    // Gone, or too slow to take one message: give up on it.
                    Ok(Err(_)) | Err(_) => break None,
                }
            }
            message = incoming.next() => match message {
                // Pongs are answered by the socket itself; data is ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(_)) => {}
            },
        }
    };
    if let Some(reason) = end {
        let frame = end_frame(reason);
        let close = Message::Close(Some(CloseFrame {
            code: reason.close_code(),
            reason: reason_text(reason).into(),
        }));
        let _ = tokio::time::timeout(write_timeout, async {
            sink.send(Message::Text(frame.json.as_ref().into())).await?;
            sink.send(close).await
        })
        .await;
    }
}

fn reason_text(reason: EndReason) -> &'static str {
    match reason {
        EndReason::TokenExpired => "token expired",
        EndReason::MaxLifetime => "maximum lifetime reached",
        EndReason::Idle => "idle",
        EndReason::Shutdown => "server shutting down",
    }
}
