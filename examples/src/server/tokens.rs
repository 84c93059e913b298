//! Minting development tokens and comparing service tokens.

use serde::Serialize;

/// Signs an HS256 JWT for `user_id`, valid for `ttl_secs`, naming `issuer`
/// (`iss`) and `audience` (`aud`) when given — pass the server's
/// `jwt_issuer` and `jwt_audience` so that it accepts the token.
pub fn mint(
    secret: &[u8],
    user_id: &str,
    ttl_secs: u64,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    #[derive(Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
        iat: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        iss: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        aud: Option<&'a str>,
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub: user_id,
            exp: now + ttl_secs,
            iat: now,
            iss: issuer,
            aud: audience,
        },
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}

/// A random secret for one development process (never a built-in default).
pub fn ephemeral_secret() -> Vec<u8> {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    s.into_bytes()
}

/// Compares two tokens without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use userlane_smol::{Authenticator, JwtAuthenticator};

    #[test]
    fn minted_tokens_verify_with_the_same_secret_only() {
        let secret = ephemeral_secret();
        assert_eq!(secret.len(), 64);
        let token = mint(&secret, "alice", 60, None, None).unwrap();
        assert_eq!(
            JwtAuthenticator::hs256(&secret)
                .authenticate(&token)
                .unwrap()
                .user_id,
            "alice"
        );
        assert!(JwtAuthenticator::hs256(&ephemeral_secret())
            .authenticate(&token)
            .is_err());
    }

    #[test]
    fn minted_tokens_carry_the_configured_issuer_and_audience() {
        let secret = ephemeral_secret();
        let strict = || {
            JwtAuthenticator::hs256(&secret)
                .with_issuer("auth.example")
                .with_audience("userlane")
        };
        let token = mint(
            &secret,
            "alice",
            12 * 3600,
            Some("auth.example"),
            Some("userlane"),
        )
        .unwrap();
        assert_eq!(strict().authenticate(&token).unwrap().user_id, "alice");
        let bare = mint(&secret, "alice", 60, None, None).unwrap();
        assert!(strict().authenticate(&bare).is_err());
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
