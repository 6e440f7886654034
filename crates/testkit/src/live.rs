//! A client of a BFF's live streams, over Server-Sent Events or a
//! WebSocket, reading the same events either way.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The two transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `text/event-stream`.
    Sse,
    /// A WebSocket.
    WebSocket,
}

/// One event received.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Its type (the SSE event name, which must equal the JSON `type`).
    pub kind: String,
    /// Its id, if any.
    pub id: Option<String>,
    /// The JSON.
    pub data: Value,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Inner {
    Sse {
        response: reqwest::Response,
        pending: Vec<u8>,
        ready: std::collections::VecDeque<LiveEvent>,
    },
    Ws(Box<Ws>),
}

/// An open live stream.
pub struct LiveClient {
    inner: Inner,
    /// The WebSocket close frame received (code, reason), once closed.
    pub closed_with: Option<(u16, String)>,
}

impl std::fmt::Debug for LiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveClient").finish_non_exhaustive()
    }
}

/// Why opening failed: the HTTP status and body answered instead.
#[derive(Debug)]
pub struct Refused {
    /// The status.
    pub status: u16,
    /// The body (problem+json).
    pub body: Value,
    /// `Content-Type`.
    pub content_type: String,
}

impl LiveClient {
    /// Opens `url` (`http://…/v1/products/{id}/live`) with `token` over
    /// `transport`, resuming after `last_event_id` when given.
    ///
    /// # Panics
    /// When the connection itself fails.
    pub async fn open(
        transport: Transport,
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, Refused> {
        match transport {
            Transport::Sse => {
                let mut request = reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .header("accept", "text/event-stream");
                if let Some(id) = last_event_id {
                    request = request.header("last-event-id", id);
                }
                let response = request.send().await.expect("the SSE request");
                if response.status() != 200 {
                    return Err(refused(response).await);
                }
                let content_type = header(&response, "content-type");
                assert!(
                    content_type.starts_with("text/event-stream"),
                    "{content_type}"
                );
                Ok(LiveClient {
                    inner: Inner::Sse {
                        response,
                        pending: Vec::new(),
                        ready: Default::default(),
                    },
                    closed_with: None,
                })
            }
            Transport::WebSocket => {
                let mut ws_url = url.replacen("http://", "ws://", 1);
                if let Some(id) = last_event_id {
                    ws_url.push_str(&format!("?lastEventId={id}"));
                }
                let mut request = ws_url.into_client_request().expect("a WebSocket URL");
                request.headers_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("header"),
                );
                match tokio_tungstenite::connect_async(request).await {
                    Ok((ws, _)) => Ok(LiveClient {
                        inner: Inner::Ws(Box::new(ws)),
                        closed_with: None,
                    }),
                    Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                        let status = response.status().as_u16();
                        let content_type = response
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = response
                            .body()
                            .as_deref()
                            .and_then(|b| serde_json::from_slice(b).ok())
                            .unwrap_or(Value::Null);
                        Err(Refused {
                            status,
                            body,
                            content_type,
                        })
                    }
                    Err(error) => panic!("WebSocket handshake: {error}"),
                }
            }
        }
    }

    /// The next event within `timeout`; `None` when the stream ended or
    /// nothing came.
    pub async fn next(&mut self, timeout: Duration) -> Option<LiveEvent> {
        tokio::time::timeout(timeout, self.read())
            .await
            .ok()
            .flatten()
    }

    /// Events until one of type `kind` satisfying `pred` (returned), within
    /// `timeout`; `None` if none came.
    pub async fn wait_for(
        &mut self,
        kind: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<LiveEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let event = self.next(left).await?;
            if event.kind == kind && pred(&event.data) {
                return Some(event);
            }
        }
    }

    async fn read(&mut self) -> Option<LiveEvent> {
        match &mut self.inner {
            Inner::Sse {
                response,
                pending,
                ready,
            } => loop {
                if let Some(event) = ready.pop_front() {
                    return Some(event);
                }
                let chunk = response.chunk().await.ok()??;
                pending.extend_from_slice(&chunk);
                while let Some(end) = find_blank_line(pending) {
                    let block: Vec<u8> = pending.drain(..end).collect();
                    if let Some(event) = parse_block(&String::from_utf8_lossy(&block)) {
                        ready.push_back(event);
                    }
                }
            },
            Inner::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Text(text)) => {
                        let data: Value = serde_json::from_str(&text).expect("JSON text message");
                        return Some(LiveEvent {
                            kind: data["type"].as_str().unwrap_or_default().to_owned(),
                            id: data["id"].as_str().map(str::to_owned),
                            data,
                        });
                    }
                    Ok(Message::Close(frame)) => {
                        self.closed_with =
                            frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                        return None;
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            },
        }
    }
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn refused(response: reqwest::Response) -> Refused {
    let status = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let body = response.json().await.unwrap_or(Value::Null);
    Refused {
        status,
        body,
        content_type,
    }
}

/// The end of the first event block (after its blank line).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

fn parse_block(block: &str) -> Option<LiveEvent> {
    let (mut kind, mut id, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => kind = Some(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    let data: Value = serde_json::from_str(&data.join("\n")).expect("JSON data");
    let kind = kind.unwrap_or_else(|| "message".to_owned());
    assert_eq!(
        data["type"].as_str(),
        Some(kind.as_str()),
        "event name = type"
    );
    assert_eq!(data["id"].as_str(), id.as_deref(), "SSE id = JSON id");
    Some(LiveEvent { kind, id, data })
}
