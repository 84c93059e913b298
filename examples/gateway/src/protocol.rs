//! The example server's JSON protocol, the subset a gateway speaks
//! (`examples/src/server/protocol.rs`): a `system_message` welcome, a
//! `user_message` answered to every connection of the sender's user, `ping`
//! answered with `pong`, and `error_message` with a fixed text on bad input.
//! Nothing a client sends is quoted back except a `user_message` text,
//! which is echoed as the JSON string it arrived as (validated first).

use core::fmt::Write as _;

use serde::Deserialize;
use serde_json_core::str::EscapedStr;

/// What a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// `{"type":"user_message","text":"…"}`: the text as it stood between
    /// the quotes (still JSON-escaped, checked to be a valid JSON string).
    UserMessage(&'a str),
    /// `{"type":"ping","id":7}` (`id` optional).
    Ping(Option<u64>),
}

/// The error codes of `error_message`, each with a fixed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame is not a JSON object of the protocol.
    InvalidJson,
    /// A `user_message` without a non-empty `text`.
    MissingText,
    /// A `type` the gateway does not know.
    UnknownType,
    /// Binary frames carry nothing in this protocol.
    UnsupportedFrame,
    /// Over the inbound budget: the message was dropped.
    RateLimited,
    /// Every message slot is in use: the message was dropped.
    Busy,
}

impl ErrorCode {
    /// The machine-readable code.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::MissingText => "MISSING_TEXT",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::UnsupportedFrame => "UNSUPPORTED_FRAME",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Busy => "BUSY",
        }
    }

    /// The fixed human-readable text.
    pub const fn message(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "malformed JSON frame",
            ErrorCode::MissingText => "user_message needs a non-empty \"text\"",
            ErrorCode::UnknownType => "unknown message type",
            ErrorCode::UnsupportedFrame => "binary frames are not supported",
            ErrorCode::RateLimited => "inbound rate limit exceeded: message dropped",
            ErrorCode::Busy => "gateway busy: message dropped, try again",
        }
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    text: Option<&'a str>,
    #[serde(default)]
    id: Option<u64>,
}

/// Parses a text frame from a client.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame<'_>, ErrorCode> {
    let (raw, _): (RawFrame<'_>, _) =
        serde_json_core::from_str(text).map_err(|_| ErrorCode::InvalidJson)?;
    match raw.kind {
        "user_message" => match raw.text {
            Some(t) if valid_json_string(t) && !t.trim().is_empty() => {
                Ok(ClientFrame::UserMessage(t))
            }
            Some(t) if !valid_json_string(t) => Err(ErrorCode::InvalidJson),
            _ => Err(ErrorCode::MissingText),
        },
        "ping" => Ok(ClientFrame::Ping(raw.id)),
        _ => Err(ErrorCode::UnknownType),
    }
}

/// Whether `raw` (the text between a JSON string's quotes) is valid: no raw
/// control characters, every escape sequence well formed.
fn valid_json_string(raw: &str) -> bool {
    !raw.bytes().any(|b| b < 0x20) && EscapedStr(raw).fragments().all(|f| f.is_ok())
}

/// An outbound frame as the writer renders it; the connection's own
/// identity and the time are filled in then.
#[derive(Debug, Clone)]
pub enum Frame<M> {
    /// The first frame of every connection.
    Welcome,
    /// A user's message, for every connection of that user.
    UserMessage(M),
    /// The answer to a client's ping.
    Pong(Option<u64>),
    /// An error reply; the connection stays open.
    Error(ErrorCode),
}

/// What a rendered frame says about its connection.
pub struct Identity<'a> {
    /// The connection's id.
    pub connection_id: u32,
    /// Its user.
    pub user_id: &'a str,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Seconds between the gateway's pings.
    pub heartbeat_interval_secs: u64,
}

/// Writes frames into a byte buffer; `None` if it does not fit.
struct Cursor<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Renders `frame` into `out` at `unix_ms`; the length, or `None` if `out`
/// is too small. `text` resolves a user message to its sender and text.
pub fn render<M>(
    out: &mut [u8],
    frame: &Frame<M>,
    me: &Identity<'_>,
    unix_ms: u64,
    text: impl FnOnce(&M, &mut dyn FnMut(u32, &str) -> core::fmt::Result) -> core::fmt::Result,
) -> Option<usize> {
    let mut w = Cursor { buf: out, len: 0 };
    let ts = Timestamp(unix_ms);
    let r = match frame {
        Frame::Welcome => write!(
            w,
            r#"{{"type":"system_message","data":{{"event":"connection_established","connection_id":"{}","user_id":"{}","environment":"gateway","config":{{"max_message_size":{},"heartbeat_interval":{}}},"factory_pattern_enabled":true}},"timestamp":{ts}}}"#,
            me.connection_id,
            Escaped(me.user_id),
            me.max_message_size,
            me.heartbeat_interval_secs
        ),
        Frame::UserMessage(m) => text(m, &mut |from, t| {
            write!(
                w,
                r#"{{"type":"user_message","data":{{"text":"{t}","connection_id":"{from}","user_id":"{}"}},"timestamp":{ts}}}"#,
                Escaped(me.user_id)
            )
        }),
        Frame::Pong(Some(id)) => write!(w, r#"{{"type":"pong","id":{id},"timestamp":{ts}}}"#),
        Frame::Pong(None) => write!(w, r#"{{"type":"pong","id":null,"timestamp":{ts}}}"#),
        Frame::Error(e) => write!(
            w,
            r#"{{"type":"error_message","error_code":"{}","error_message":"{}","timestamp":{ts}}}"#,
            e.code(),
            Escaped(e.message())
        ),
    };
    r.ok().map(|()| w.len)
}

/// Seconds since the Unix epoch with milliseconds, as the server writes it.
struct Timestamp(u64);

impl core::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A string escaped for the inside of a JSON string literal.
struct Escaped<'a>(&'a str);

impl core::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
            f.write_str(&rest[..i])?;
            let c = rest.as_bytes()[i];
            match c {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                _ => write!(f, "\\u{:04x}", c)?,
            }
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn client_frames_are_parsed_or_refused_with_a_code() {
        assert_eq!(
            parse_client_frame(r#"{"type":"user_message","text":"hi \"you\"\n","x":[1]}"#),
            Ok(ClientFrame::UserMessage(r#"hi \"you\"\n"#))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"ping","id":7}"#),
            Ok(ClientFrame::Ping(Some(7)))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping(None))
        );
        let refused = [
            ("{not json", ErrorCode::InvalidJson),
            (
                r#"{"type":"user_message","text":"bad \q"}"#,
                ErrorCode::InvalidJson,
            ),
            (
                "{\"type\":\"user_message\",\"text\":\"raw\u{1}\"}",
                ErrorCode::InvalidJson,
            ),
            (
                r#"{"type":"user_message","text":"  "}"#,
                ErrorCode::MissingText,
            ),
            (r#"{"type":"user_message"}"#, ErrorCode::MissingText),
            (r#"{"type":"dance"}"#, ErrorCode::UnknownType),
        ];
        for (frame, code) in refused {
            assert_eq!(parse_client_frame(frame), Err(code), "{frame}");
        }
    }

    fn me() -> Identity<'static> {
        Identity {
            connection_id: 3,
            user_id: "alice",
            max_message_size: 1024,
            heartbeat_interval_secs: 25,
        }
    }

    fn rendered(frame: &Frame<&str>) -> std::string::String {
        let mut out = [0u8; 512];
        let n = render(&mut out, frame, &me(), 1_800_000_000_123, |m, f| f(9, m)).unwrap();
        std::string::String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn frames_have_the_servers_shape() {
        assert_eq!(
            rendered(&Frame::UserMessage(r#"hi \"you\""#)),
            r#"{"type":"user_message","data":{"text":"hi \"you\"","connection_id":"9","user_id":"alice"},"timestamp":1800000000.123}"#
        );
        assert_eq!(
            rendered(&Frame::Welcome),
            r#"{"type":"system_message","data":{"event":"connection_established","connection_id":"3","user_id":"alice","environment":"gateway","config":{"max_message_size":1024,"heartbeat_interval":25},"factory_pattern_enabled":true},"timestamp":1800000000.123}"#
        );
        assert_eq!(
            rendered(&Frame::Pong(Some(7))),
            r#"{"type":"pong","id":7,"timestamp":1800000000.123}"#
        );
        assert_eq!(
            rendered(&Frame::Error(ErrorCode::MissingText)),
            r#"{"type":"error_message","error_code":"MISSING_TEXT","error_message":"user_message needs a non-empty \"text\"","timestamp":1800000000.123}"#
        );
        let mut small = [0u8; 16];
        assert_eq!(
            render(&mut small, &Frame::<&str>::Welcome, &me(), 0, |m, f| f(
                0, m
            )),
            None
        );
    }
}
