//! Which browser pages may open the WebSocket endpoints: the `Origin`
//! allow-list (a defence against cross-site WebSocket hijacking, where a
//! page on another site opens a socket that the browser authenticates with
//! the user's cookies or a token it can reach).

use std::fmt;
use std::str::FromStr;

/// Which `Origin` an upgrade request (at `ws_path` or `echo_path`) may come
/// from. A request without an `Origin` header (a non-browser client) is
/// always allowed: browsers always send one on a WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Any origin (development and testing default).
    Any,
    /// The origin's `host[:port]` must equal the request's `Host` header
    /// (case-insensitive; a default port — 80 for http/ws, 443 for
    /// https/wss — may be left out on either side). The production and
    /// staging default.
    SameHost,
    /// The origin must be one of these `scheme://host[:port]` values
    /// (exact, case-insensitive; a trailing `/` in an entry is ignored).
    List(Vec<String>),
}

impl OriginPolicy {
    /// Whether a request with these `Origin` and `Host` header values passes.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin.map(str::trim) else {
            return true;
        };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::SameHost => {
                let (Some((scheme, authority)), Some(host)) = (split_origin(origin), host) else {
                    return false;
                };
                let default = default_port(scheme);
                normalize(authority, default) == normalize(host.trim(), default)
            }
            OriginPolicy::List(list) => list.iter().any(|allowed| {
                allowed
                    .trim()
                    .trim_end_matches('/')
                    .eq_ignore_ascii_case(origin)
            }),
        }
    }
}

/// `scheme` and `host[:port]` of an origin `scheme://host[:port]`; `None`
/// for `null` or anything with a path, user info or no host.
fn split_origin(origin: &str) -> Option<(&str, &str)> {
    let (scheme, authority) = origin.split_once("://")?;
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    Some((scheme, authority))
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some("80"),
        "https" | "wss" => Some("443"),
        _ => None,
    }
}

/// `authority` lowercased, without `:default`.
fn normalize(authority: &str, default: Option<&str>) -> String {
    let lower = authority.to_ascii_lowercase();
    if let Some(host) = default
        .and_then(|d| lower.strip_suffix(d))
        .and_then(|h| h.strip_suffix(':'))
    {
        // Not the inside of an IPv6 literal such as `[::80`.
        if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) {
            return host.to_owned();
        }
    }
    lower
}

impl fmt::Display for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPolicy::Any => f.write_str("*"),
            OriginPolicy::SameHost => f.write_str("same-host"),
            OriginPolicy::List(list) => f.write_str(&list.join(",")),
        }
    }
}

/// An `--allowed-origins` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin {0:?} (expected *, same-host, or a comma-separated list of scheme://host[:port])")]
pub struct BadOrigin(pub String);

impl FromStr for OriginPolicy {
    type Err = BadOrigin;

    /// `*` is [`OriginPolicy::Any`], `same-host` is [`OriginPolicy::SameHost`],
    /// anything else a comma-separated [`OriginPolicy::List`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "*" => return Ok(OriginPolicy::Any),
            t if t.eq_ignore_ascii_case("same-host") => return Ok(OriginPolicy::SameHost),
            _ => {}
        }
        let list: Vec<String> = s
            .split(',')
            .map(|o| o.trim().trim_end_matches('/'))
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        if list.is_empty() {
            return Err(BadOrigin(s.to_owned()));
        }
        for o in &list {
            if split_origin(o).is_none() {
                return Err(BadOrigin(o.clone()));
            }
        }
        Ok(OriginPolicy::List(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origin_is_always_allowed() {
        for p in [
            OriginPolicy::Any,
            OriginPolicy::SameHost,
            OriginPolicy::List(vec![]),
        ] {
            assert!(p.allows(None, Some("a.example")));
        }
    }

    #[test]
    fn same_host_compares_authority_with_host() {
        let p = OriginPolicy::SameHost;
        assert!(p.allows(Some("https://App.Example"), Some("app.example")));
        assert!(p.allows(Some("https://app.example"), Some("app.example:443")));
        assert!(p.allows(Some("http://127.0.0.1:9600"), Some("127.0.0.1:9600")));
        assert!(p.allows(Some("http://[::1]:80"), Some("[::1]")));
        assert!(!p.allows(Some("http://127.0.0.1:9601"), Some("127.0.0.1:9600")));
        assert!(!p.allows(Some("https://evil.example"), Some("app.example")));
        assert!(!p.allows(Some("null"), Some("app.example")));
        assert!(!p.allows(Some("https://app.example"), None));
        assert!(!p.allows(Some("https://app.example/x"), Some("app.example")));
    }

    #[test]
    fn lists_match_exactly_ignoring_case() {
        let p: OriginPolicy = "https://a.example, http://b.example:8080/".parse().unwrap();
        assert!(p.allows(Some("https://A.example"), Some("x")));
        assert!(p.allows(Some("http://b.example:8080"), Some("x")));
        assert!(!p.allows(Some("http://a.example"), Some("a.example")));
        assert!(!p.allows(Some("https://a.example.evil"), Some("x")));
        assert_eq!("*".parse(), Ok(OriginPolicy::Any));
        assert_eq!("Same-Host".parse(), Ok(OriginPolicy::SameHost));
        assert!("".parse::<OriginPolicy>().is_err());
        assert!("a.example".parse::<OriginPolicy>().is_err());
    }
}
