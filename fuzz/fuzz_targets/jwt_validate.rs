//! Fuzzes the JWT validator: arbitrary bytes as a token never panic and never validate
//! (the fuzzer cannot forge Ed25519), whatever header tricks they contain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::UnixMillis;
use tether_trust::{KeyRing, KeyRingConfig, SharedKeyRing, TokenType, Validator, ValidatorConfig};

fuzz_target!(|data: &[u8]| {
    let now = UnixMillis(1_764_115_200_000);
    let Ok(ring) = KeyRing::generate(KeyRingConfig::default(), now) else { return };
    let Ok(validator) = Validator::new(SharedKeyRing::new(ring), ValidatorConfig::new("https://tether.test")) else { return };
    let token = String::from_utf8_lossy(data);
    for t in [TokenType::Access, TokenType::Refresh, TokenType::Pair] {
        assert!(validator.validate(&token, "tether-api", t, now).is_err());
    }
});
