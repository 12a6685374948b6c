//! Writes every example body as a signed envelope, one file per type, into the directory
//! given as the only argument (used to seed the fuzz corpus and to check other
//! implementations against ours). Signs with the published test key `[1u8; 32]`.
//!
//! `cargo run -p tether-proto --example sign_examples -- fuzz/seeds/envelope_decode`

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use tether_proto::envelope::{EnvelopeSigner, Stamp};
use tether_proto::{MessageId, MessageType, TraceId, UnixMillis, examples};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: sign_examples <dir>")?,
    );
    std::fs::create_dir_all(&dir)?;
    let signer = EnvelopeSigner::new(SigningKey::from_bytes(&[1; 32]));
    for (i, &t) in MessageType::ALL.iter().enumerate() {
        let stamp = Stamp {
            iat: UnixMillis(1_764_115_200_000),
            ttl: 60,
            seq: u64::try_from(i)?.saturating_add(1),
            message_id: MessageId::parse("0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10")?,
            trace_id: TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736")?,
        };
        let frame = signer.seal_value(t, stamp, examples::body(t))?;
        std::fs::write(dir.join(format!("{}.json", t.name())), &frame)?;
    }
    println!(
        "wrote {} signed examples to {}",
        MessageType::ALL.len(),
        dir.display()
    );
    Ok(())
}
