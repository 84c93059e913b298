//! HS256 JWT verification without allocation: `hmac` + `sha2` for the
//! signature, `base64` (URL-safe, no padding) and `serde-json-core` for the
//! header and claims. The rules are the example server's
//! (`runtime-smol/src/auth.rs`) for a gateway that configures no issuer and
//! no audience: `sub` and `exp` required, `exp` and `nbf` enforced with a
//! leeway, the lifetime bounded, a token naming an audience refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Clock skew accepted on `exp` and `nbf`, in seconds (the server's default).
pub const LEEWAY_SECS: u64 = 30;
/// Longest lifetime of a token: `exp` at most this far ahead of now (plus the
/// leeway), and `exp - iat` at most this (the server's default, 24 h).
pub const MAX_LIFETIME_SECS: u64 = 24 * 3600;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 768;

/// Longest decoded JWT header.
const MAX_HEADER_JSON: usize = 128;
/// Longest decoded claims object.
const MAX_CLAIMS_JSON: usize = 512;

/// Why a token was refused. The texts are fixed: nothing of the token is
/// ever quoted back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts, undecodable, too long, or bad JSON.
    Malformed,
    /// The header does not say `"alg":"HS256"`.
    UnsupportedAlgorithm,
    /// The signature does not match the secret.
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is ahead of now (beyond the leeway).
    NotYetValid,
    /// `exp` too far ahead, or `exp - iat` longer than [`MAX_LIFETIME_SECS`].
    LifetimeTooLong,
    /// The token names an audience: it was minted for another service.
    WrongAudience,
}

impl TokenError {
    /// The fixed text for this refusal.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed token",
            TokenError::UnsupportedAlgorithm => "unsupported algorithm",
            TokenError::BadSignature => "bad signature",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not valid yet",
            TokenError::LifetimeTooLong => "token lifetime too long",
            TokenError::WrongAudience => "wrong token audience",
        }
    }
}

/// The identity a valid token proves; the strings borrow from `scratch`
/// given to [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    /// The user (`sub`).
    pub user_id: &'a str,
    /// `thread_id`, if the token names one.
    pub thread_id: Option<&'a str>,
    /// `run_id`, if the token names one.
    pub run_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct Header<'a> {
    alg: &'a str,
}

#[derive(Deserialize)]
struct RawClaims<'a> {
    sub: Option<&'a str>,
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    aud: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    thread_id: Option<&'a str>,
    #[serde(default)]
    run_id: Option<&'a str>,
}

/// Scratch space for [`verify`]: the decoded claims live here.
pub struct Scratch {
    claims: [u8; MAX_CLAIMS_JSON],
}

impl Scratch {
    /// Empty scratch space.
    pub const fn new() -> Self {
        Scratch {
            claims: [0; MAX_CLAIMS_JSON],
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Verifies an HS256 `token` signed with `secret` at `now_unix` (seconds).
/// The signature is checked first (in constant time, by `hmac`), so nothing
/// of an unsigned token is parsed beyond its header.
pub fn verify<'s>(
    token: &str,
    secret: &[u8],
    now_unix: u64,
    scratch: &'s mut Scratch,
) -> Result<Claims<'s>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };

    let mut header_json = [0u8; MAX_HEADER_JSON];
    let n = URL_SAFE_NO_PAD
        .decode_slice(header, &mut header_json)
        .map_err(|_| TokenError::Malformed)?;
    let (h, _): (Header<'_>, _) =
        serde_json_core::from_slice(&header_json[..n]).map_err(|_| TokenError::Malformed)?;
    if h.alg != "HS256" {
        return Err(TokenError::UnsupportedAlgorithm);
    }

    let mut sig = [0u8; 32];
    let n = URL_SAFE_NO_PAD
        .decode_slice(signature, &mut sig)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::BadSignature)?;
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(claims.as_bytes());
    mac.verify_slice(&sig[..n])
        .map_err(|_| TokenError::BadSignature)?;

    let n = URL_SAFE_NO_PAD
        .decode_slice(claims, &mut scratch.claims)
        .map_err(|_| TokenError::Malformed)?;
    let (c, _): (RawClaims<'s>, _) =
        serde_json_core::from_slice(&scratch.claims[..n]).map_err(|_| TokenError::Malformed)?;
    let (Some(sub), Some(exp)) = (c.sub, c.exp) else {
        return Err(TokenError::Malformed);
    };
    if c.aud.is_some() {
        return Err(TokenError::WrongAudience);
    }
    if exp.saturating_add(LEEWAY_SECS) <= now_unix {
        return Err(TokenError::Expired);
    }
    if c.nbf
        .is_some_and(|nbf| nbf > now_unix.saturating_add(LEEWAY_SECS))
    {
        return Err(TokenError::NotYetValid);
    }
    let too_far = exp > now_unix.saturating_add(MAX_LIFETIME_SECS + LEEWAY_SECS);
    let too_long = c
        .iat
        .is_some_and(|iat| exp.saturating_sub(iat) > MAX_LIFETIME_SECS);
    if too_far || too_long {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(Claims {
        user_id: sub,
        thread_id: c.thread_id,
        run_id: c.run_id,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::String;

    const SECRET: &[u8] = b"gateway-test-secret";
    const NOW: u64 = 1_800_000_000;

    fn sign(header: &str, claims: &str, secret: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let c = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{c}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{c}.{s}")
    }

    fn token(claims: &str) -> String {
        sign(r#"{"alg":"HS256","typ":"JWT"}"#, claims, SECRET)
    }

    fn check(token: &str) -> Result<(String, Option<String>), TokenError> {
        let mut scratch = Scratch::new();
        verify(token, SECRET, NOW, &mut scratch)
            .map(|c| (c.user_id.into(), c.thread_id.map(String::from)))
    }

    #[test]
    fn a_valid_token_names_its_user() {
        let t = token(&format!(
            r#"{{"sub":"alice","exp":{},"iat":{NOW},"thread_id":"t1","extra":[1,{{"x":2}}]}}"#,
            NOW + 600
        ));
        assert_eq!(check(&t), Ok(("alice".into(), Some("t1".into()))));
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let exp = NOW + 600;
        let other = sign(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"alice","exp":{exp}}}"#),
            b"another secret",
        );
        assert_eq!(check(&other), Err(TokenError::BadSignature));
        let none = sign(
            r#"{"alg":"none"}"#,
            &format!(r#"{{"sub":"alice","exp":{exp}}}"#),
            SECRET,
        );
        assert_eq!(check(&none), Err(TokenError::UnsupportedAlgorithm));
        let cases = [
            (
                format!(r#"{{"sub":"a","exp":{}}}"#, NOW - 31),
                TokenError::Expired,
            ),
            (
                format!(r#"{{"sub":"a","exp":{exp},"nbf":{}}}"#, NOW + 31),
                TokenError::NotYetValid,
            ),
            (
                format!(r#"{{"sub":"a","exp":{}}}"#, NOW + 2 * 86_400),
                TokenError::LifetimeTooLong,
            ),
            (
                format!(r#"{{"sub":"a","exp":{exp},"iat":{}}}"#, exp - 86_401),
                TokenError::LifetimeTooLong,
            ),
            (
                format!(r#"{{"sub":"a","exp":{exp},"aud":["svc"]}}"#),
                TokenError::WrongAudience,
            ),
            (format!(r#"{{"exp":{exp}}}"#), TokenError::Malformed),
            (r#"{"sub":"a"}"#.into(), TokenError::Malformed),
        ];
        for (claims, want) in cases {
            assert_eq!(check(&token(&claims)), Err(want), "{claims}");
        }
        assert_eq!(check("a.b"), Err(TokenError::Malformed));
        assert_eq!(check("a.b.c.d"), Err(TokenError::Malformed));
        assert_eq!(check(&"x".repeat(800)), Err(TokenError::Malformed));
        // Tampering with the claims breaks the signature.
        let good = token(&format!(r#"{{"sub":"alice","exp":{exp}}}"#));
        let mut parts: std::vec::Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"bob","exp":{exp}}}"#));
        parts[1] = &forged;
        assert_eq!(check(&parts.join(".")), Err(TokenError::BadSignature));
    }
}
