//! Security scenario 12: every malformed context is rejected, naming the
//! field, whether it is built in code or decoded from JSON or postcard.
//!
//! The seed's version passed non-contexts (`None`, a string, a dict, `123`,
//! `[]`) to `create_manager`; in Rust that does not compile, since
//! `create_manager` takes a `UserContext` and the only ways to get one are
//! `UserContext::new` and deserialization, both checked here.

use userlane_core::{ContextError, ContextField, Error, IdError, UserContext, MAX_ID_LEN};

/// Malformed values and the reason each must be refused with.
fn malformed() -> Vec<(String, IdError)> {
    vec![
        (String::new(), IdError::Empty),
        (" ".into(), IdError::Whitespace),
        ("    ".into(), IdError::Whitespace),
        ("\u{3000}".into(), IdError::Whitespace),
        ("None".into(), IdError::Placeholder),
        ("none".into(), IdError::Placeholder),
        ("NULL".into(), IdError::Placeholder),
        (" null ".into(), IdError::Placeholder),
        ("undefined".into(), IdError::Placeholder),
        ("registry".into(), IdError::Placeholder),
        ("Registry".into(), IdError::Placeholder),
        ("x".repeat(MAX_ID_LEN + 1), IdError::TooLong),
        ("é".repeat(MAX_ID_LEN / 2 + 1), IdError::TooLong),
        ("a\nb".into(), IdError::ControlCharacter),
        ("tab\there".into(), IdError::ControlCharacter),
        ("nul\0".into(), IdError::ControlCharacter),
        ("\u{7f}".into(), IdError::ControlCharacter),
        ("\u{1b}[31mred".into(), IdError::ControlCharacter),
        ("\u{85}".into(), IdError::ControlCharacter),
        ("\u{200B}".into(), IdError::Invisible),
        ("\u{FEFF}".into(), IdError::Invisible),
        ("\u{2060}\u{2060}".into(), IdError::Invisible),
        ("\u{00AD}".into(), IdError::Invisible),
        ("\u{200E}\u{200F}\u{202E}".into(), IdError::Invisible),
        (" \u{200B}\u{3164} ".into(), IdError::Invisible),
        ("\u{E0041}\u{E0042}".into(), IdError::Invisible),
    ]
}

const FIELDS: [ContextField; 5] = [
    ContextField::UserId,
    ContextField::ThreadId,
    ContextField::RunId,
    ContextField::RequestId,
    ContextField::ConnectionId,
];

/// Builds a context with `value` in `field` and valid values elsewhere.
fn build(field: ContextField, value: &str) -> Result<UserContext, ContextError> {
    let mut f = ["user-1", "thread-1", "run-1", "req-1"];
    match field {
        ContextField::UserId => f[0] = value,
        ContextField::ThreadId => f[1] = value,
        ContextField::RunId => f[2] = value,
        ContextField::RequestId => f[3] = value,
        ContextField::ConnectionId => {
            return UserContext::new(f[0], f[1], f[2], f[3])?.with_connection_id(value)
        }
    }
    UserContext::new(f[0], f[1], f[2], f[3])
}

fn json_with(field: ContextField, value: &str) -> String {
    let mut obj = serde_json::json!({
        "user_id": "user-1", "thread_id": "thread-1", "run_id": "run-1", "request_id": "req-1",
        "connection_id": "conn-1",
    });
    obj[field.name()] = serde_json::Value::String(value.to_owned());
    obj.to_string()
}

/// Scenario 12 — context enforcement: 26 malformed values × 5 fields = 130
/// contexts, each refused with the field and the reason named, in code and
/// on both wire formats.
#[test]
fn scenario_12_every_malformed_context_is_rejected_with_the_field_named() {
    let cases = malformed();
    assert_eq!(cases.len(), 26);
    let mut rejected = 0;
    for field in FIELDS {
        for (value, reason) in &cases {
            let err = build(field, value).unwrap_err();
            assert_eq!(
                err,
                ContextError {
                    field,
                    reason: *reason
                },
                "{field:?} = {value:?}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("invalid user context: {} ", field.name())),
                "{text}"
            );
            assert_eq!(
                Error::from(err).to_string(),
                text,
                "the core error shows the same text"
            );
            // JSON: refused, and the message names the field.
            let json = json_with(field, value);
            let msg = serde_json::from_str::<UserContext>(&json)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(&format!("{} {}", field.name(), reason)),
                "{json}: {msg}"
            );
            rejected += 1;
        }
    }
    assert_eq!(rejected, 130);

    // postcard: the same value in a raw context (four strings, no connection id).
    let raw = postcard::to_allocvec(&("user-1", "null", "run-1", "req-1", None::<&str>)).unwrap();
    let err = postcard::from_bytes::<UserContext>(&raw).unwrap_err();
    assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");
    let good =
        postcard::to_allocvec(&("user-1", "thread-1", "run-1", "req-1", None::<&str>)).unwrap();
    assert_eq!(
        postcard::from_bytes::<UserContext>(&good).unwrap(),
        build(ContextField::UserId, "user-1").unwrap()
    );
}

/// The edges of the rules are accepted: exactly 64 bytes, a placeholder as
/// part of a longer id, inner spaces, non-ASCII letters.
#[test]
fn scenario_12_values_at_the_edges_are_accepted() {
    let accepted = [
        "y".repeat(MAX_ID_LEN),
        "é".repeat(MAX_ID_LEN / 2),
        "nonesuch".into(),
        "null-island".into(),
        "registry_7".into(),
        " padded ".into(),
        "Zoë Ångström".into(),
        "550e8400-e29b-41d4-a716-446655440000".into(),
    ];
    for field in FIELDS {
        for value in &accepted {
            let ctx = build(field, value).unwrap_or_else(|e| panic!("{field:?} = {value:?}: {e}"));
            let stored = match field {
                ContextField::UserId => ctx.user_id(),
                ContextField::ThreadId => ctx.thread_id(),
                ContextField::RunId => ctx.run_id(),
                ContextField::RequestId => ctx.request_id(),
                ContextField::ConnectionId => ctx.connection_id().unwrap(),
            };
            assert_eq!(stored, value.as_str());
            let json = serde_json::to_string(&ctx).unwrap();
            assert_eq!(serde_json::from_str::<UserContext>(&json).unwrap(), ctx);
        }
    }
}
