//! Helpers of the tests that run against a booted kernel, here and in
//! lkl-boot's (which includes this file): cases are functions returning an
//! [`Outcome`], checked with `ensure!`.

use std::net::IpAddr;

use lkl_net::Rtnl;

/// A case's result: `Err` says what was wrong.
pub type Outcome = Result<(), String>;

/// Fails the case with the message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// An error as the case's message.
pub fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// An address written in the test.
pub fn ip(t: &str) -> IpAddr {
    t.parse().unwrap()
}

/// The error of a call that must fail.
pub fn refused<T: std::fmt::Debug, E>(r: Result<T, E>, what: &str) -> Result<E, String> {
    match r {
        Ok(v) => Err(format!("{what} succeeded ({v:?}), expected an error")),
        Err(e) => Ok(e),
    }
}

/// A netlink socket inside LKL.
pub fn nl() -> Result<Rtnl, String> {
    Rtnl::open().map_err(s)
}
