//! WebSocket close codes and the reasons the core closes a connection.

use core::fmt;

/// A WebSocket close code that may be sent on the wire (RFC 6455 §7.4).
///
/// Only codes an endpoint is allowed to send can be built: 1000–1003,
/// 1007–1014 and the registered/private ranges 3000–4999. 1004–1006 and 1015
/// are reserved for local use and never appear in a close frame, and an HTTP
/// status is never a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "u16", into = "u16"))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is going away (shutdown).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: a text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the server's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1013: try again later; the core uses it for slow consumers.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Builds a close code, refusing codes that must not be sent.
    pub const fn new(code: u16) -> Result<Self, InvalidCloseCode> {
        match code {
            1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(CloseCode(code)),
            _ => Err(InvalidCloseCode(code)),
        }
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = InvalidCloseCode;
    fn try_from(code: u16) -> Result<Self, Self::Error> {
        CloseCode::new(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A number that is not a close code an endpoint may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InvalidCloseCode(pub u16);

impl fmt::Display for InvalidCloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a sendable WebSocket close code (allowed: 1000-1003, 1007-1014, 3000-4999)",
            self.0
        )
    }
}

/// Why a connection was closed. Each reason has a short text suitable for the
/// reason field of a close frame (at most 123 bytes, always ASCII).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseReason {
    /// No inbound frame or pong arrived within the idle timeout.
    IdleTimeout,
    /// The connection's outbound queue was full under
    /// [`SlowConsumerPolicy::CloseSlowConnection`](crate::SlowConsumerPolicy).
    SlowConsumer,
    /// The user's manager was deactivated.
    ManagerDeactivated,
    /// The application closed the connection
    /// ([`ManagerFactory::close_connection`](crate::ManagerFactory::close_connection)).
    Application,
    /// The server is shutting down.
    ServerShutdown,
    /// The connection kept sending over its inbound budget
    /// ([`Config::inbound_strikes`](crate::Config::inbound_strikes)); closed
    /// with 1008 ([`CloseCode::POLICY_VIOLATION`]).
    InboundFlood,
}

impl CloseReason {
    /// The reason text sent in the close frame.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::SlowConsumer => "slow consumer: outbound queue full",
            CloseReason::ManagerDeactivated => "user manager deactivated",
            CloseReason::Application => "closed by application",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::InboundFlood => "inbound rate limit exceeded",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A close to send on a connection: a valid code and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CloseFrame {
    /// The close code.
    pub code: CloseCode,
    /// Why the connection is closed; [`CloseReason::as_str`] is the reason text.
    pub reason: CloseReason,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub const fn new(code: CloseCode, reason: CloseReason) -> Self {
        CloseFrame { code, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sendable_codes_are_accepted() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 1014, 3000, 4001, 4999,
        ] {
            assert_eq!(CloseCode::new(code).map(CloseCode::as_u16), Ok(code));
        }
        for code in [
            0,
            401,
            500,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2999,
            5000,
            u16::MAX,
        ] {
            assert_eq!(CloseCode::new(code), Err(InvalidCloseCode(code)));
        }
    }

    #[test]
    fn reasons_fit_in_a_close_frame() {
        for r in [
            CloseReason::IdleTimeout,
            CloseReason::SlowConsumer,
            CloseReason::ManagerDeactivated,
            CloseReason::Application,
            CloseReason::ServerShutdown,
            CloseReason::InboundFlood,
        ] {
            assert!(r.as_str().len() <= 123 && r.as_str().is_ascii());
        }
    }
}
