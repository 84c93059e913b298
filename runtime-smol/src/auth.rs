//! Who is connecting: the `Authenticator` trait, the provided HS256 JWT
//! implementation, and how a token is found in the upgrade request.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::time::Duration;

use serde::Deserialize;

use crate::config::ServerConfig;
pub use crate::config::DEFAULT_JWT_MAX_LIFETIME;
use crate::http::{bearer_token, percent_decode, Encoded, Head};

/// The identity a token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (JWT claim `sub`).
    pub user_id: String,
    /// The conversation thread, if the token names one.
    pub thread_id: Option<String>,
    /// The run, if the token names one.
    pub run_id: Option<String>,
}

/// Why a token was refused (always HTTP 401 before the upgrade). The texts
/// are fixed: nothing from the token reaches an HTTP answer or a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token has expired (`exp`, beyond the leeway).
    #[error("token expired")]
    Expired,
    /// The token is not valid yet (`nbf` ahead of now, beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// The token lives longer than the configured maximum lifetime (`exp`
    /// too far ahead of now, or of `iat`).
    #[error("token lifetime too long")]
    LifetimeTooLong,
    /// The token's issuer (`iss`) is missing or not the configured one.
    #[error("wrong token issuer")]
    WrongIssuer,
    /// The token's audience (`aud`) is missing or not the configured one, or
    /// the token names an audience and none is configured.
    #[error("wrong token audience")]
    WrongAudience,
    /// The token is malformed, badly signed, or lacks a required claim. The
    /// built-in authenticator puts a fixed text here; the server shows a
    /// custom authenticator's text only as a short escaped excerpt.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Turns a bearer token into an [`Identity`]. Called inside the connection's
/// own task during the handshake, never in the accept loop.
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies `token`.
    fn authenticate(&self, token: &str) -> Result<Identity, AuthError>;
}

/// HS256 JWTs: `sub` is the user id (required), `exp` is required and
/// enforced, `nbf` is enforced when present, `thread_id` and `run_id` are
/// used when present.
///
/// - Leeway ([`with_leeway`](Self::with_leeway), default none; the server
///   uses `ServerConfig::jwt_leeway`, 30 s) applies to `exp` and `nbf`.
/// - Maximum lifetime ([`with_max_lifetime`](Self::with_max_lifetime),
///   default 24 h): a token whose `exp` is further ahead of now than that
///   (plus the leeway), or whose `exp - iat` exceeds it, is refused, so a
///   leaked long-lived token cannot be used for years.
/// - Issuer ([`with_issuer`](Self::with_issuer)): when set, `iss` is required
///   and must equal it.
/// - Audience ([`with_audience`](Self::with_audience)): when set, `aud` is
///   required and must contain it. When none is set, a token that names
///   any audience is refused: it was minted for some other service and must
///   not be replayable here.
pub struct JwtAuthenticator {
    key: DecodingKey,
    validation: Validation,
    max_lifetime: Duration,
}

impl JwtAuthenticator {
    /// An authenticator for tokens signed with `secret`: no leeway, a
    /// maximum lifetime of 24 h, no issuer or audience.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtAuthenticator {
            key: DecodingKey::from_secret(secret),
            validation,
            max_lifetime: DEFAULT_JWT_MAX_LIFETIME,
        }
    }

    /// The authenticator a server with `config` uses: `secret` with
    /// `jwt_leeway`, `jwt_max_lifetime`, `jwt_issuer` and `jwt_audience`.
    pub fn from_config(secret: &[u8], config: &ServerConfig) -> Self {
        let mut auth = JwtAuthenticator::hs256(secret)
            .with_leeway(config.jwt_leeway)
            .with_max_lifetime(config.jwt_max_lifetime);
        if let Some(iss) = &config.jwt_issuer {
            auth = auth.with_issuer(iss);
        }
        if let Some(aud) = &config.jwt_audience {
            auth = auth.with_audience(aud);
        }
        auth
    }

    /// Accepts `exp` up to `leeway` in the past and `nbf` up to `leeway`
    /// ahead (clock skew between the token issuer and this server).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// Refuses tokens whose `exp` is more than `max` ahead of now (beyond
    /// the leeway) or whose `exp - iat` is more than `max`.
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Requires `iss` to be `issuer`.
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Requires `aud` to be (or contain) `audience`.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.required_spec_claims.insert("aud".into());
        self
    }
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithm", &"HS256")
            .field("leeway_secs", &self.validation.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
}

/// A fixed text for every way `jsonwebtoken` refuses a token: its own
/// messages may quote the token (an unknown `alg` comes back verbatim).
fn auth_error(kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    let text = match kind {
        K::ExpiredSignature => return AuthError::Expired,
        K::ImmatureSignature => return AuthError::NotYetValid,
        K::InvalidIssuer => return AuthError::WrongIssuer,
        K::InvalidAudience => return AuthError::WrongAudience,
        K::MissingRequiredClaim(c) => match c.as_str() {
            "iss" => return AuthError::WrongIssuer,
            "aud" => return AuthError::WrongAudience,
            "exp" => "missing claim exp",
            "sub" => "missing claim sub",
            _ => "missing required claim",
        },
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => {
            "unsupported algorithm"
        }
        K::InvalidClaimFormat(_) => "malformed claim",
        K::InvalidSubject => "invalid subject",
        K::Base64(_) | K::Json(_) | K::Utf8(_) | K::InvalidToken => "malformed token",
        _ => "invalid token",
    };
    AuthError::Invalid(text.to_owned())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator for JwtAuthenticator {
    fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| auth_error(e.kind()))?;
        let claims = data.claims;
        let max = self.max_lifetime.as_secs();
        let latest_exp = unix_now()
            .saturating_add(max)
            .saturating_add(self.validation.leeway);
        if claims.exp > latest_exp
            || claims
                .iat
                .is_some_and(|iat| claims.exp.saturating_sub(iat) > max)
        {
            return Err(AuthError::LifetimeTooLong);
        }
        Ok(Identity {
            user_id: claims.sub,
            thread_id: claims.thread_id,
            run_id: claims.run_id,
        })
    }
}

/// The subprotocol a browser offers to say "my token is in the next one".
pub const JWT_AUTH_PROTOCOL: &str = "jwt-auth";
/// Prefix of the subprotocol carrying `base64url(jwt)`.
pub const JWT_PROTOCOL_PREFIX: &str = "jwt.";

/// Where the token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundToken {
    /// The token, if any.
    pub(crate) token: Option<String>,
    /// The client offered `jwt-auth`; the response must select it.
    pub(crate) select_jwt_auth: bool,
}

/// A request whose credentials cannot even be read (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed request: {0}")]
pub(crate) struct Malformed(pub(crate) &'static str);

/// Finds the token: `Authorization: Bearer <jwt>`, else the subprotocol
/// `jwt.<base64url(jwt)>`, else the `token` query parameter.
pub(crate) fn find_token(head: &Head) -> Result<FoundToken, Malformed> {
    let mut found = FoundToken {
        token: None,
        select_jwt_auth: false,
    };
    for value in head.ascii_values("sec-websocket-protocol") {
        let value = value.ok_or(Malformed("Sec-WebSocket-Protocol is not ASCII"))?;
        for proto in value.split(',').map(str::trim) {
            if proto == JWT_AUTH_PROTOCOL {
                found.select_jwt_auth = true;
            } else if let Some(encoded) = proto.strip_prefix(JWT_PROTOCOL_PREFIX) {
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded.trim_end_matches('='))
                    .map_err(|_| Malformed("jwt subprotocol is not base64url"))?;
                let token = String::from_utf8(bytes)
                    .map_err(|_| Malformed("jwt subprotocol is not UTF-8"))?;
                found.token.get_or_insert(token);
            }
        }
    }
    if let Some(value) = head.ascii_value("authorization") {
        let value = value.ok_or(Malformed("Authorization is not ASCII"))?;
        let token =
            bearer_token(value).ok_or(Malformed("Authorization must be 'Bearer <token>'"))?;
        found.token = Some(token.to_owned());
        return Ok(found);
    }
    if found.token.is_none() {
        if let Some(query) = head.query.as_deref() {
            for pair in query.split('&') {
                if let Some(v) = pair.strip_prefix("token=") {
                    found.token = Some(
                        percent_decode(v, Encoded::Query)
                            .ok_or(Malformed("token query parameter is badly encoded"))?,
                    );
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde::Serialize;

    #[derive(Serialize)]
    struct TestClaims<'a> {
        sub: &'a str,
        exp: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        thread_id: Option<&'a str>,
    }

    const SECRET: &[u8] = b"test-secret-0123456789";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(sub: &str, exp: u64, thread_id: Option<&str>) -> String {
        encode(
            &Header::default(),
            &TestClaims {
                sub,
                exp,
                thread_id,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn valid_token_gives_identity() {
        let auth = JwtAuthenticator::hs256(SECRET);
        let id = auth
            .authenticate(&token("alice", now() + 60, Some("t-1")))
            .unwrap();
        assert_eq!(
            id,
            Identity {
                user_id: "alice".into(),
                thread_id: Some("t-1".into()),
                run_id: None
            }
        );
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let auth = JwtAuthenticator::hs256(SECRET);
        assert_eq!(
            auth.authenticate(&token("alice", now() - 5, None)),
            Err(AuthError::Expired)
        );
        let forged = JwtAuthenticator::hs256(b"another-secret-0123456");
        assert!(matches!(
            forged.authenticate(&token("alice", now() + 60, None)),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            auth.authenticate("not.a.jwt"),
            Err(AuthError::Invalid(_))
        ));
    }

    fn signed(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn nbf_lifetime_issuer_and_audience_have_their_own_errors() {
        use serde_json::json;
        let n = now();
        let auth = JwtAuthenticator::hs256(SECRET).with_leeway(Duration::from_secs(30));
        let check = |c| auth.authenticate(&signed(c)).map(|id| id.user_id);
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 60, "nbf": n + 3600})),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 60, "nbf": n + 20})),
            Ok("a".into())
        );
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 100 * 365 * 86_400})),
            Err(AuthError::LifetimeTooLong)
        );
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 60, "iat": n - 86_400})),
            Err(AuthError::LifetimeTooLong)
        );
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 60, "aud": "elsewhere"})),
            Err(AuthError::WrongAudience)
        );
        let strict = JwtAuthenticator::hs256(SECRET)
            .with_issuer("auth.example")
            .with_audience("userlane");
        let check = |c| strict.authenticate(&signed(c)).map(|id| id.user_id);
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 60, "iss": "auth.example", "aud": "userlane"})),
            Ok("a".into())
        );
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 60, "aud": "userlane"})),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 60, "iss": "x", "aud": "userlane"})),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            check(json!({"sub": "a", "exp": n + 60, "iss": "auth.example"})),
            Err(AuthError::WrongAudience)
        );
    }

    #[test]
    fn library_error_texts_never_quote_the_token() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let auth = JwtAuthenticator::hs256(SECRET);
        let header = B64.encode(format!(r#"{{"alg":"X\nforged{}"}}"#, "A".repeat(10_000)));
        let token = format!("{header}.{}.c2ln", B64.encode(r#"{"sub":"a","exp":1}"#));
        let err = auth.authenticate(&token).unwrap_err().to_string();
        assert!(err.len() < 40 && !err.contains("forged"), "{err}");
    }

    fn request(headers: &[(&str, &str)], uri: &str) -> Head {
        Head::for_test(uri, headers)
    }

    #[test]
    fn token_is_found_in_header_subprotocol_or_query() {
        let r = request(&[("Authorization", "Bearer abc.def.ghi")], "/ws");
        assert_eq!(
            find_token(&r).unwrap().token.as_deref(),
            Some("abc.def.ghi")
        );
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("abc.def.ghi");
        let r = request(
            &[("Sec-WebSocket-Protocol", &format!("jwt-auth, jwt.{enc}"))],
            "/ws",
        );
        let found = find_token(&r).unwrap();
        assert_eq!(
            (found.token.as_deref(), found.select_jwt_auth),
            (Some("abc.def.ghi"), true)
        );
        let r = request(&[], "/ws?x=1&token=abc.def.ghi");
        assert_eq!(
            find_token(&r).unwrap().token.as_deref(),
            Some("abc.def.ghi")
        );
        assert_eq!(find_token(&request(&[], "/ws")).unwrap().token, None);
    }

    #[test]
    fn unreadable_credentials_are_malformed() {
        assert!(find_token(&request(&[("Authorization", "Basic x")], "/ws")).is_err());
        assert!(find_token(&request(&[("Sec-WebSocket-Protocol", "jwt.!!!")], "/ws")).is_err());
        assert!(find_token(&request(&[], "/ws?token=%zz")).is_err());
        assert!(find_token(&request(&[("Authorization", "Bearer a\u{e9}b")], "/ws")).is_err());
    }
}
