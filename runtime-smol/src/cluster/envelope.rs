//! The wire format between nodes: [`Envelope`] (a version byte and
//! postcard) and its conversion from and to a WebSocket [`Message`].

use async_tungstenite::tungstenite::Message;
use serde::{Deserialize, Serialize};

/// Envelope format version: the first byte of every message between nodes.
pub const ENVELOPE_VERSION: u8 = 1;

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// Deliver to every local connection of the user.
    Deliver {
        /// The node that accepted the message.
        origin: [u8; 16],
        /// Text (true) or binary frame.
        text: bool,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Close every local connection of the user.
    Disconnect {
        /// The node that asked.
        origin: [u8; 16],
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Deactivate the user's manager on every node.
    Deactivate {
        /// The node that asked.
        origin: [u8; 16],
    },
}

impl Envelope {
    /// Version byte + postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENVELOPE_VERSION];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Decodes bytes from [`Envelope::encode`]; `None` for another version or garbage.
    pub fn decode(bytes: &[u8]) -> Option<Envelope> {
        match bytes.split_first() {
            Some((&ENVELOPE_VERSION, rest)) => postcard::from_bytes(rest).ok(),
            _ => None,
        }
    }

    /// The node that sent it.
    pub fn origin(&self) -> [u8; 16] {
        match self {
            Envelope::Deliver { origin, .. }
            | Envelope::Disconnect { origin, .. }
            | Envelope::Deactivate { origin } => *origin,
        }
    }
}

/// The envelope carrying `message` from node `origin` (text or binary; other
/// frame kinds are not application messages and give `None`).
pub fn envelope_of(message: &Message, origin: [u8; 16]) -> Option<Envelope> {
    match message {
        Message::Text(t) => Some(Envelope::Deliver {
            origin,
            text: true,
            payload: t.as_bytes().to_vec(),
        }),
        Message::Binary(b) => Some(Envelope::Deliver {
            origin,
            text: false,
            payload: b.to_vec(),
        }),
        _ => None,
    }
}

/// The message a `Deliver` envelope carries.
pub fn message_of(envelope: Envelope) -> Option<Message> {
    match envelope {
        Envelope::Deliver {
            text: true,
            payload,
            ..
        } => String::from_utf8(payload).ok().map(Message::text),
        Envelope::Deliver {
            text: false,
            payload,
            ..
        } => Some(Message::binary(payload)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_with_a_version_byte() {
        let e = Envelope::Deliver {
            origin: [7; 16],
            text: true,
            payload: b"hello".to_vec(),
        };
        let bytes = e.encode();
        assert_eq!(bytes[0], ENVELOPE_VERSION);
        assert_eq!(Envelope::decode(&bytes), Some(e));
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(Envelope::decode(&other), None);
        assert_eq!(Envelope::decode(&[]), None);
        assert_eq!(Envelope::decode(&[ENVELOPE_VERSION, 0xff, 0xff]), None);
    }
}
