//! Positions in users' Redis streams: stream ids, the published payload
//! that carries one, and a node's [`Cursor`] in a user's stream.

use super::envelope::Envelope;

/// A stream id, `ms-seq`.
pub(super) type StreamId = (u64, u64);

pub(super) fn parse_id(s: &[u8]) -> Option<StreamId> {
    let (ms, seq) = std::str::from_utf8(s).ok()?.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// A published payload: `<stream id> <envelope>`, `' '<envelope>` (control),
/// or a bare envelope (a node of the previous release; it starts with the
/// version byte, never a digit or a space).
pub(super) fn split_published(payload: &[u8]) -> (Option<StreamId>, &[u8]) {
    match payload.iter().position(|b| *b == b' ') {
        Some(space)
            if payload[..space]
                .iter()
                .all(|b| b.is_ascii_digit() || *b == b'-') =>
        {
            (parse_id(&payload[..space]), &payload[space + 1..])
        }
        _ => (None, payload),
    }
}

/// A node's position in one user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cursor {
    /// The Redis data set the ids belong to (a new one after Redis lost its data).
    pub(super) epoch: String,
    /// Every message up to here was delivered to this node's connections of
    /// the user, or sent before it subscribed: a later drain reads after it.
    pub(super) at: StreamId,
    /// Every message up to here was delivered: a published one at or below it
    /// is a duplicate (a drain delivered it already).
    pub(super) delivered: Option<StreamId>,
}

/// What one drain read for a user: the stream's last id and `(id, stored
/// for nobody, envelope)` per message.
pub(super) type Drained = (Option<StreamId>, Vec<(StreamId, bool, Envelope)>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_payloads_carry_a_stream_id_and_bare_envelopes_still_decode() {
        let e = Envelope::Deactivate { origin: [9; 16] };
        let bytes = e.encode();
        let mut with_id = b"1764320000000-7 ".to_vec();
        with_id.extend(&bytes);
        assert_eq!(
            split_published(&with_id),
            (Some((1_764_320_000_000, 7)), &bytes[..])
        );
        let mut control = b" ".to_vec();
        control.extend(&bytes);
        assert_eq!(split_published(&control), (None, &bytes[..]));
        // From a node of the previous release: the version byte comes first.
        assert_eq!(split_published(&bytes), (None, &bytes[..]));
        assert_eq!(Envelope::decode(split_published(&with_id).1), Some(e));
        assert_eq!(parse_id(b"12-x"), None);
    }
}
