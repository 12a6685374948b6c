//! Account primitives: password hashing and TOTP.

pub mod password;
pub mod totp;
