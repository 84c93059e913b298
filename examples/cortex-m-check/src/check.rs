//! How a scenario fails: a [`Failure`] that says what and where, made by
//! [`ensure!`] and [`ensure_eq!`] or by `?` on an error of the core.

use core::fmt;
use core::panic::Location;

use userlane_core::{ConfigError, ContextError, Error, SendError};

/// What went wrong in a scenario.
#[derive(Debug)]
pub enum What {
    /// A check of the scenario did not hold (the checked expression).
    Check(&'static str),
    /// The core refused an operation the scenario expected to succeed.
    Core(Error),
    /// The scenario's configuration was refused.
    Config(ConfigError),
    /// A user context could not be built.
    Context(ContextError),
}

/// A failed scenario: what went wrong and the line of the scenario where.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub what: What,
    /// The check or the `?` that failed.
    pub at: &'static Location<'static>,
}

impl Failure {
    /// A failed check at the caller's line.
    #[track_caller]
    pub fn check(expression: &'static str) -> Self {
        Failure {
            what: What::Check(expression),
            at: Location::caller(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.at.file(), self.at.line())?;
        match &self.what {
            What::Check(expression) => write!(f, "check failed: {expression}"),
            What::Core(e) => write!(f, "core refused: {e} ({e:?})"),
            What::Config(e) => write!(f, "config refused: {e:?}"),
            What::Context(e) => write!(f, "context refused: {e:?}"),
        }
    }
}

impl From<Error> for Failure {
    #[track_caller]
    fn from(e: Error) -> Self {
        Failure {
            what: What::Core(e),
            at: Location::caller(),
        }
    }
}

impl<P> From<SendError<P>> for Failure {
    #[track_caller]
    fn from(refusal: SendError<P>) -> Self {
        Failure {
            what: What::Core(refusal.error),
            at: Location::caller(),
        }
    }
}

impl From<ConfigError> for Failure {
    #[track_caller]
    fn from(e: ConfigError) -> Self {
        Failure {
            what: What::Config(e),
            at: Location::caller(),
        }
    }
}

impl From<ContextError> for Failure {
    #[track_caller]
    fn from(e: ContextError) -> Self {
        Failure {
            what: What::Context(e),
            at: Location::caller(),
        }
    }
}

/// Fails the scenario with the expression's text unless it holds.
macro_rules! ensure {
    ($cond:expr) => {
        if !$cond {
            return Err($crate::check::Failure::check(stringify!($cond)));
        }
    };
}

/// Fails the scenario unless both sides are equal, printing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {
        match (&$left, &$right) {
            (left, right) => {
                if *left != *right {
                    cortex_m_semihosting::hprintln!("  left:  {:?}\n  right: {:?}", left, right);
                    return Err($crate::check::Failure::check(concat!(
                        stringify!($left),
                        " == ",
                        stringify!($right)
                    )));
                }
            }
        }
    };
}

pub(crate) use {ensure, ensure_eq};

/// The value inside `option`, or a failure at the caller's line.
#[track_caller]
pub fn found<T>(option: Option<T>) -> Result<T, Failure> {
    match option {
        Some(value) => Ok(value),
        None => Err(Failure::check("expected Some, found None")),
    }
}
