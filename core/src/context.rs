//! `UserContext`: the validated, immutable identity of one user's lane.

use core::fmt;

/// Longest identifier the core accepts, in bytes of UTF-8.
///
/// 64 bytes holds a UUID (36), a ULID (26), a hex SHA-256 (64) or a typical
/// e-mail address, and keeps a context at a few hundred bytes so that a
/// gateway can preallocate its tables.
pub const MAX_ID_LEN: usize = 64;

/// Values that mean "no real identifier" in the systems userlane replaces.
/// They are refused in every field, compared case-insensitively after trimming.
pub const PLACEHOLDER_IDS: [&str; 4] = ["none", "null", "undefined", "registry"];

/// A validated identifier: 1..=[`MAX_ID_LEN`] bytes, not blank, no control
/// characters, not a placeholder.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(heapless::String<MAX_ID_LEN, u8>);

impl Id {
    /// Validates `value` for use as an identifier.
    pub fn new(value: &str) -> Result<Self, IdError> {
        check_id(value)?;
        let mut s = heapless::String::new();
        // Length was checked above, so this cannot fail; map it anyway rather than panic.
        s.push_str(value).map_err(|_| IdError::TooLong)?;
        Ok(Id(s))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

fn check_id(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(IdError::Whitespace);
    }
    if trimmed.chars().all(is_invisible) {
        return Err(IdError::Invisible);
    }
    if PLACEHOLDER_IDS
        .iter()
        .any(|p| trimmed.eq_ignore_ascii_case(p))
    {
        return Err(IdError::Placeholder);
    }
    Ok(())
}

/// Characters that render as nothing: the Unicode format characters
/// (General Category Cf, Unicode 15.1: soft hyphen, zero-width space and
/// joiners, bidirectional marks and isolates, word joiner, byte-order mark,
/// tag characters, …) plus the well-known invisible fillers that are not Cf:
/// U+115F and U+1160 (Hangul choseong/jungseong fillers), U+2800 (braille
/// blank), U+3164 (Hangul filler) and U+FFA0 (halfwidth Hangul filler).
/// Sorted, inclusive, non-overlapping ranges.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` shows nothing: whitespace, a control character (Cc), a format
/// character (Cf) or an invisible filler (see [`INVISIBLE`]).
fn is_invisible(c: char) -> bool {
    if c.is_whitespace() || c.is_control() {
        return true;
    }
    let c = u32::from(c);
    INVISIBLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                core::cmp::Ordering::Less
            } else if lo > c {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IdError {
    /// The identifier is empty.
    Empty,
    /// The identifier is only whitespace.
    Whitespace,
    /// The identifier is longer than [`MAX_ID_LEN`] bytes.
    TooLong,
    /// The identifier contains a control character.
    ControlCharacter,
    /// The identifier is a placeholder such as `null` or `registry`.
    Placeholder,
    /// Nothing of the identifier is visible: once whitespace, control (Cc)
    /// and format (Cf) characters and invisible fillers (U+115F, U+1160,
    /// U+2800, U+3164, U+FFA0) are removed, it is empty (for example only
    /// U+200B, U+FEFF, U+2060, U+00AD or bidirectional marks). Such
    /// characters among visible ones are allowed.
    Invisible,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdError::Empty => "is empty",
            IdError::Whitespace => "is only whitespace",
            IdError::TooLong => "is longer than 64 bytes",
            IdError::ControlCharacter => "contains a control character",
            IdError::Placeholder => "is a placeholder value (none/null/undefined/registry)",
            IdError::Invisible => "has no visible character",
        })
    }
}

/// A field of [`UserContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ContextField {
    /// `user_id`
    UserId,
    /// `thread_id`
    ThreadId,
    /// `run_id`
    RunId,
    /// `request_id`
    RequestId,
    /// `connection_id`
    ConnectionId,
}

impl ContextField {
    /// The field's name as it appears in serialized contexts.
    pub const fn name(self) -> &'static str {
        match self {
            ContextField::UserId => "user_id",
            ContextField::ThreadId => "thread_id",
            ContextField::RunId => "run_id",
            ContextField::RequestId => "request_id",
            ContextField::ConnectionId => "connection_id",
        }
    }
}

/// A context was refused: which field, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ContextError {
    /// The offending field.
    pub field: ContextField,
    /// What is wrong with it.
    pub reason: IdError,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid user context: {} {}",
            self.field.name(),
            self.reason
        )
    }
}

fn field(field: ContextField, value: &str) -> Result<Id, ContextError> {
    Id::new(value).map_err(|reason| ContextError { field, reason })
}

/// The identity of one user's lane: who the user is and which thread, run and
/// request the lane serves.
///
/// Immutable once built; every field is validated by [`UserContext::new`] and,
/// with the `serde` feature, again on deserialization, so an invalid context
/// can never exist. Only `user_id` decides isolation: two contexts with the
/// same `user_id` address the same manager.
// `repr(C)` keeps `user_id` first, so the manager table finds it right
// after the fields a send reads (see `factory::slots::UserSlot`).
#[derive(Clone, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct UserContext {
    user_id: Id,
    thread_id: Id,
    run_id: Id,
    request_id: Id,
    connection_id: Option<Id>,
}

impl UserContext {
    /// The content of a manager slot that holds no context (every id empty).
    /// Never handed out: the factory reads a slot's context only while the
    /// slot is active.
    pub(crate) const VACANT: UserContext = UserContext {
        user_id: Id(heapless::String::new()),
        thread_id: Id(heapless::String::new()),
        run_id: Id(heapless::String::new()),
        request_id: Id(heapless::String::new()),
        connection_id: None,
    };

    /// Builds a context, validating every field.
    pub fn new(
        user_id: &str,
        thread_id: &str,
        run_id: &str,
        request_id: &str,
    ) -> Result<Self, ContextError> {
        Ok(UserContext {
            user_id: field(ContextField::UserId, user_id)?,
            thread_id: field(ContextField::ThreadId, thread_id)?,
            run_id: field(ContextField::RunId, run_id)?,
            request_id: field(ContextField::RequestId, request_id)?,
            connection_id: None,
        })
    }

    /// The same context bound to one connection.
    pub fn with_connection_id(mut self, connection_id: &str) -> Result<Self, ContextError> {
        self.connection_id = Some(field(ContextField::ConnectionId, connection_id)?);
        Ok(self)
    }

    /// The user this context belongs to.
    pub fn user_id(&self) -> &str {
        self.user_id.as_str()
    }
    /// The conversation thread.
    pub fn thread_id(&self) -> &str {
        self.thread_id.as_str()
    }
    /// The run within the thread.
    pub fn run_id(&self) -> &str {
        self.run_id.as_str()
    }
    /// The request that created this context.
    pub fn request_id(&self) -> &str {
        self.request_id.as_str()
    }
    /// The connection this context is bound to, if any.
    pub fn connection_id(&self) -> Option<&str> {
        self.connection_id.as_ref().map(Id::as_str)
    }
}

impl fmt::Debug for UserContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserContext")
            .field("user_id", &self.user_id)
            .field("thread_id", &self.thread_id)
            .field("run_id", &self.run_id)
            .field("request_id", &self.request_id)
            .field("connection_id", &self.connection_id)
            .finish()
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    //! Serialization is plain; deserialization re-runs every check and names
    //! the failing field in the error.
    use super::*;
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::{SerializeStruct, Serializer};
    use serde::{Deserialize, Serialize};

    impl Serialize for Id {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw = RawId::deserialize(d)?;
            raw.0.map_err(de::Error::custom)
        }
    }

    /// An identifier as read from the wire, validated but not yet judged, so
    /// the context can report which field failed.
    struct RawId(Result<Id, IdError>);

    impl<'de> Deserialize<'de> for RawId {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = RawId;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an identifier string")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<RawId, E> {
                    Ok(RawId(Id::new(v)))
                }
            }
            d.deserialize_str(V)
        }
    }

    impl Serialize for UserContext {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("UserContext", 5)?;
            st.serialize_field("user_id", &self.user_id)?;
            st.serialize_field("thread_id", &self.thread_id)?;
            st.serialize_field("run_id", &self.run_id)?;
            st.serialize_field("request_id", &self.request_id)?;
            st.serialize_field("connection_id", &self.connection_id)?;
            st.end()
        }
    }

    #[derive(Deserialize)]
    #[serde(rename = "UserContext")]
    struct RawContext {
        user_id: RawId,
        thread_id: RawId,
        run_id: RawId,
        request_id: RawId,
        #[serde(default)]
        connection_id: Option<RawId>,
    }

    fn judge(field: ContextField, raw: RawId) -> Result<Id, ContextError> {
        raw.0.map_err(|reason| ContextError { field, reason })
    }

    impl<'de> Deserialize<'de> for UserContext {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw = RawContext::deserialize(d)?;
            let build = || -> Result<UserContext, ContextError> {
                Ok(UserContext {
                    user_id: judge(ContextField::UserId, raw.user_id)?,
                    thread_id: judge(ContextField::ThreadId, raw.thread_id)?,
                    run_id: judge(ContextField::RunId, raw.run_id)?,
                    request_id: judge(ContextField::RequestId, raw.request_id)?,
                    connection_id: match raw.connection_id {
                        Some(c) => Some(judge(ContextField::ConnectionId, c)?),
                        None => None,
                    },
                })
            };
            build().map_err(de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_with(field_index: usize, value: &str) -> Result<UserContext, ContextError> {
        let mut f = ["u1", "t1", "r1", "q1"];
        f[field_index] = value;
        UserContext::new(f[0], f[1], f[2], f[3])
    }

    #[test]
    fn valid_context_keeps_its_fields() {
        let c = UserContext::new("alice", "thread-1", "run-1", "req-1")
            .unwrap()
            .with_connection_id("conn-1")
            .unwrap();
        assert_eq!(
            (
                c.user_id(),
                c.thread_id(),
                c.run_id(),
                c.request_id(),
                c.connection_id()
            ),
            ("alice", "thread-1", "run-1", "req-1", Some("conn-1"))
        );
    }

    #[test]
    fn every_field_is_validated_and_named() {
        let fields = [
            ContextField::UserId,
            ContextField::ThreadId,
            ContextField::RunId,
            ContextField::RequestId,
        ];
        let long = "x".repeat(MAX_ID_LEN + 1);
        let cases: [(&str, IdError); 9] = [
            ("", IdError::Empty),
            ("   ", IdError::Whitespace),
            (long.as_str(), IdError::TooLong),
            ("a\nb", IdError::ControlCharacter),
            ("a\u{7f}", IdError::ControlCharacter),
            ("None", IdError::Placeholder),
            ("NULL", IdError::Placeholder),
            (" undefined ", IdError::Placeholder),
            ("Registry", IdError::Placeholder),
        ];
        for (i, field) in fields.iter().enumerate() {
            for (value, reason) in cases {
                assert_eq!(
                    ctx_with(i, value),
                    Err(ContextError {
                        field: *field,
                        reason
                    }),
                    "field {i} value {value:?}"
                );
            }
        }
        let base = UserContext::new("u", "t", "r", "q").unwrap();
        assert_eq!(
            base.with_connection_id("null"),
            Err(ContextError {
                field: ContextField::ConnectionId,
                reason: IdError::Placeholder
            })
        );
    }

    #[test]
    fn the_invisible_table_is_sorted_and_disjoint() {
        for w in INVISIBLE.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:x?}");
        }
        for c in [
            '\u{00AD}',
            '\u{061C}',
            '\u{115F}',
            '\u{1160}',
            '\u{200B}',
            '\u{200E}',
            '\u{200F}',
            '\u{202E}',
            '\u{2060}',
            '\u{2800}',
            '\u{3164}',
            '\u{FEFF}',
            '\u{FFA0}',
            '\u{E0001}',
            '\u{E007F}',
        ] {
            assert!(is_invisible(c), "{:X}", u32::from(c));
        }
        for c in [
            'a',
            '0',
            '-',
            '\u{00AE}',
            '\u{200A}', /* whitespace */
            'é',
            '\u{1F600}',
        ] {
            assert_eq!(is_invisible(c), c.is_whitespace(), "{:X}", u32::from(c));
        }
    }

    #[test]
    fn ids_with_nothing_visible_are_refused() {
        for id in [
            "\u{200B}",
            "\u{FEFF}",
            "\u{2060}\u{2060}",
            "\u{00AD}",
            "\u{200E}\u{200F}",
            " \u{200B} ",
            "\u{3164}",
            "\u{2800}",
            "\u{202E}\u{00A0}\u{FEFF}",
        ] {
            assert_eq!(Id::new(id), Err(IdError::Invisible), "{id:?}");
        }
        // Invisible characters among visible ones are allowed.
        for id in ["a\u{200B}b", "\u{FEFF}alice", "user\u{00AD}1", "\u{200F}x"] {
            assert_eq!(
                Id::new(id).map(|i| i.as_str().len()),
                Ok(id.len()),
                "{id:?}"
            );
        }
        // Only whitespace keeps its own error.
        assert_eq!(Id::new(" \u{3000}"), Err(IdError::Whitespace));
        assert_eq!(
            ctx_with(0, "\u{200B}").unwrap_err().to_string(),
            "invalid user context: user_id has no visible character"
        );
    }

    #[test]
    fn exactly_max_len_is_accepted() {
        let max = "y".repeat(MAX_ID_LEN);
        assert_eq!(ctx_with(0, &max).unwrap().user_id(), max);
        // Multi-byte characters count in bytes.
        let multi = "é".repeat(MAX_ID_LEN / 2 + 1);
        assert_eq!(ctx_with(0, &multi).unwrap_err().reason, IdError::TooLong);
    }

    #[test]
    fn error_message_names_field() {
        let e = ctx_with(2, " ").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid user context: run_id is only whitespace"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserialization_validates_and_names_the_field() {
        let good = UserContext::new("u", "t", "r", "q").unwrap();
        let json = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<UserContext>(&json).unwrap(), good);
        let bad = r#"{"user_id":"u","thread_id":"null","run_id":"r","request_id":"q"}"#;
        let err = serde_json::from_str::<UserContext>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("thread_id is a placeholder"), "{err}");
        let long = format!(
            r#"{{"user_id":"{}","thread_id":"t","run_id":"r","request_id":"q"}}"#,
            "z".repeat(100)
        );
        let err = serde_json::from_str::<UserContext>(&long)
            .unwrap_err()
            .to_string();
        assert!(err.contains("user_id is longer than 64 bytes"), "{err}");
        let bytes = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<UserContext>(&bytes).unwrap(), good);
    }
}
