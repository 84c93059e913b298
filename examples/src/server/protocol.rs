//! The JSON frames of the example protocol.

use serde::Deserialize;
use serde_json::{json, Value};

/// Seconds since the Unix epoch, with milliseconds.
pub fn timestamp() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

/// `{"type": kind, "data": data, "timestamp": …}`.
pub fn event(kind: &str, data: Value) -> String {
    json!({ "type": kind, "data": data, "timestamp": timestamp() }).to_string()
}

/// The first frame of every connection.
pub fn connection_established(
    connection_id: &str,
    user_id: &str,
    environment: &str,
    max_message_size: usize,
    heartbeat_interval_secs: u64,
) -> String {
    event(
        "system_message",
        json!({
            "event": "connection_established",
            "connection_id": connection_id,
            "user_id": user_id,
            "environment": environment,
            "config": { "max_message_size": max_message_size, "heartbeat_interval": heartbeat_interval_secs },
            "factory_pattern_enabled": true,
        }),
    )
}

/// An error reply; the connection stays open.
pub fn error_message(code: &str, message: &str) -> String {
    json!({ "type": "error_message", "error_code": code, "error_message": message, "timestamp": timestamp() })
        .to_string()
}

/// Longest excerpt of client-sent text quoted back in an answer or a log,
/// in characters.
pub const EXCERPT_CHARS: usize = 32;

/// A short, escaped excerpt of client-sent `text` for answers and logs: at
/// most [`EXCERPT_CHARS`] characters, Rust-escaped (no control characters
/// or quotes pass through), with `…` and the full length in bytes when cut.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS).map(|(i, _)| i) {
        None => format!("{text:?}"),
        Some(i) => format!("{:?}… ({} bytes)", &text[..i], text.len()),
    }
}

/// Longest message of the JSON parser quoted back, in characters (the
/// parser's messages may quote a value the client sent).
pub const PARSER_MESSAGE_CHARS: usize = 120;

/// `text` cut to at most `max_chars` characters, `…` marking a cut.
pub fn truncated(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `{"type":"user_message","text":"…"}`
    UserMessage(String),
    /// `{"type":"ping","id":7}` (`id` optional): answered with [`pong`] on
    /// the same connection, without starting a run. A client measures its
    /// round trip with it.
    Ping(Option<u64>),
}

/// The answer to a client's ping: `{"type":"pong","id":…,"timestamp":…}`.
pub fn pong(id: Option<u64>) -> String {
    json!({ "type": "pong", "id": id, "timestamp": timestamp() }).to_string()
}

/// Why a client frame was refused: an error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<u64>,
}

/// Parses a text frame from a client.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let raw: RawFrame = serde_json::from_str(text).map_err(|e| FrameError {
        code: "INVALID_JSON",
        message: format!(
            "malformed JSON: {}",
            truncated(&e.to_string(), PARSER_MESSAGE_CHARS)
        ),
    })?;
    match raw.kind.as_str() {
        "user_message" => match raw.text {
            Some(t) if !t.trim().is_empty() => Ok(ClientFrame::UserMessage(t)),
            _ => Err(FrameError {
                code: "MISSING_TEXT",
                message: "user_message needs a non-empty \"text\"".into(),
            }),
        },
        "ping" => Ok(ClientFrame::Ping(raw.id)),
        other => Err(FrameError {
            code: "UNKNOWN_TYPE",
            message: format!("unknown message type {}", excerpt(other)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_are_parsed_or_refused_with_a_code() {
        assert_eq!(
            parse_client_frame(r#"{"type":"user_message","text":"hi"}"#),
            Ok(ClientFrame::UserMessage("hi".into()))
        );
        assert_eq!(
            parse_client_frame("{not json").unwrap_err().code,
            "INVALID_JSON"
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"ping","id":7}"#),
            Ok(ClientFrame::Ping(Some(7)))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping(None))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"dance"}"#).unwrap_err().code,
            "UNKNOWN_TYPE"
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"user_message","text":"  "}"#)
                .unwrap_err()
                .code,
            "MISSING_TEXT"
        );
    }

    #[test]
    fn client_text_is_quoted_back_as_a_short_escaped_excerpt() {
        assert_eq!(excerpt("dance"), "\"dance\"");
        assert_eq!(excerpt("a\nb\"c"), "\"a\\nb\\\"c\"");
        let long = "x".repeat(10_000);
        let e = excerpt(&long);
        assert!(e.len() < 60 && e.ends_with("… (10000 bytes)"), "{e}");
        let frame = format!(r#"{{"type":"{long}"}}"#);
        let err = parse_client_frame(&frame).unwrap_err();
        assert!(err.message.len() < 100, "{}", err.message);
        // The parser quotes values it did not expect: cut too.
        let frame = format!(r#"{{"type":"user_message","text":{{"{long}":1}}}}"#);
        let err = parse_client_frame(&frame).unwrap_err();
        assert_eq!(err.code, "INVALID_JSON");
        assert!(err.message.len() < 160, "{}", err.message);
        assert_eq!(
            parse_client_frame("{not json").unwrap_err().message,
            "malformed JSON: key must be a string at line 1 column 2"
        );
    }

    #[test]
    fn greeting_has_the_documented_shape() {
        let v: Value = serde_json::from_str(&connection_established(
            "c1",
            "alice",
            "development",
            65536,
            25,
        ))
        .unwrap();
        assert_eq!(v["type"], "system_message");
        assert_eq!(v["data"]["event"], "connection_established");
        assert_eq!(v["data"]["config"]["max_message_size"], 65536);
        assert_eq!(v["data"]["config"]["heartbeat_interval"], 25);
        assert_eq!(v["data"]["factory_pattern_enabled"], true);
        assert!(v["timestamp"].as_f64().unwrap() > 1.0e9);
    }
}
