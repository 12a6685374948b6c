//! Checks the server's address before anything starts, so a port already taken is one
//! clear message naming `--listen` rather than a server that dies at start-up.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};

use crate::error::LocalError;

/// Binds `addr` for a moment and lets it go. Port 0 is always free.
pub fn check(addr: SocketAddr) -> Result<(), LocalError> {
    if addr.port() == 0 {
        return Ok(());
    }
    // std sets SO_REUSEADDR on Unix, as the server's listener does, so a port left in
    // TIME_WAIT by a previous run passes here as it would there.
    match TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AddrInUse => Err(LocalError::AddressInUse {
            addr,
            suggestion: next_port(addr),
        }),
        Err(source) => Err(LocalError::Listen { addr, source }),
    }
}

fn next_port(addr: SocketAddr) -> String {
    let mut next = addr;
    next.set_port(addr.port().checked_add(1).unwrap_or(8444));
    next.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_port_in_use_names_the_flag_to_change() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = check(addr).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("already in use"), "{text}");
        assert!(text.contains("--listen"), "{text}");
        assert!(text.contains(&next_port(addr)), "{text}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_free_port_and_port_zero_pass() {
        assert!(check("127.0.0.1:0".parse().unwrap()).is_ok());
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(check(free).is_ok());
    }
}
