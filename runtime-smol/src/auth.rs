//! Who is connecting: the `Authenticator` trait, the provided HS256 JWT
//! implementation, and how a token is found in the upgrade request.

use async_tungstenite::tungstenite::handshake::server::Request;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::http::{bearer_token, percent_decode, Encoded};

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

/// Why a token was refused (always HTTP 401 before the upgrade).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token is malformed, badly signed, or lacks a required claim.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Turns a bearer token into an [`Identity`]. Called inside the connection's
/// own task during the handshake, never in the accept loop.
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies `token`.
    fn authenticate(&self, token: &str) -> Result<Identity, AuthError>;
}

/// HS256 JWTs: `sub` is the user id (required), `exp` is enforced with no
/// leeway, `thread_id` and `run_id` are used when present.
pub struct JwtAuthenticator {
    key: DecodingKey,
    validation: Validation,
}

impl JwtAuthenticator {
    /// An authenticator for tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtAuthenticator {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtAuthenticator(HS256)")
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
}

impl Authenticator for JwtAuthenticator {
    fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            },
        )?;
        Ok(Identity {
            user_id: data.claims.sub,
            thread_id: data.claims.thread_id,
            run_id: data.claims.run_id,
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
pub(crate) fn find_token(req: &Request) -> Result<FoundToken, Malformed> {
    let mut found = FoundToken {
        token: None,
        select_jwt_auth: false,
    };
    for value in req.headers().get_all("sec-websocket-protocol") {
        let value = value
            .to_str()
            .map_err(|_| Malformed("Sec-WebSocket-Protocol is not ASCII"))?;
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
    if let Some(value) = req.headers().get("authorization") {
        let value = value
            .to_str()
            .map_err(|_| Malformed("Authorization is not ASCII"))?;
        let token =
            bearer_token(value).ok_or(Malformed("Authorization must be 'Bearer <token>'"))?;
        found.token = Some(token.to_owned());
        return Ok(found);
    }
    if found.token.is_none() {
        if let Some(query) = req.uri().query() {
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

    fn request(headers: &[(&str, &str)], uri: &str) -> Request {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
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
    }
}
