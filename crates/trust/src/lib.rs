//! Tether trust core.
