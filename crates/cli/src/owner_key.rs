//! The owner's Ed25519 key (the seed's MobilePub). `tether register` creates it and sends
//! its public half as `mobile_pub`; the owner's PCs pin that key at pairing and will run
//! only commands it signed. The private half never leaves the profile directory.

use ed25519_dalek::SigningKey;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use tether_proto::KeyId;
use tether_proto::owner_sig::UserSig;
use tether_proto::validate::{b64url_decode, b64url_encode};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CliError;
use crate::profile::{OWNER_KEY_FILE, Profile};

/// The key as stored in `owner-key.json` (wiped from memory when dropped).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KeyFile {
    /// Always `ed25519`.
    kind: String,
    /// The key id (as in envelope headers).
    kid: String,
    /// Public key, unpadded base64url of 32 bytes.
    public_key: String,
    /// The 32-byte secret seed, unpadded base64url.
    secret_seed: String,
}

/// The owner's signing key.
pub struct OwnerKey {
    signing: SigningKey,
}

impl std::fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerKey")
            .field("kid", &self.kid())
            .field("public_key", &self.public_b64())
            .finish_non_exhaustive()
    }
}

impl OwnerKey {
    /// A new key from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    /// The public key, unpadded base64url (the `mobile_pub` of registration).
    pub fn public_b64(&self) -> String {
        b64url_encode(self.signing.verifying_key().as_bytes())
    }

    /// The key id: the first 8 bytes of SHA-256 of the public key, in hex.
    pub fn kid(&self) -> String {
        KeyId::for_ed25519(self.signing.verifying_key().as_bytes()).to_string()
    }

    /// Signs a statement's canonical bytes (a command's, or an owner-keys change's;
    /// docs/protocol.md sections 6.11 and 6.12).
    pub fn sign(&self, statement: &[u8]) -> UserSig {
        tether_proto::owner_sig::sign_ed25519(&self.signing, statement)
    }

    /// The key as a PC pins it.
    pub fn pinned(&self) -> tether_proto::messages::discovery::OwnerKey {
        tether_proto::messages::discovery::OwnerKey {
            kid: self.kid(),
            kind: tether_proto::owner_sig::KIND_ED25519.into(),
            public_key: self.public_b64(),
            role: Default::default(),
        }
    }

    /// The profile's key, or a clear error saying why commands cannot be signed.
    pub fn require(profile: &Profile) -> Result<Self, CliError> {
        Self::load(profile)?.ok_or_else(|| {
            CliError::usage(format!(
                "this profile has no owner key ({} is missing), and your PCs run only \
                 commands signed by a key they pinned: use the profile you registered \
                 with (`tether register` created the key there), or copy its {} here \
                 (--unsigned sends the command anyway; the PC will refuse it)",
                profile.path(OWNER_KEY_FILE).display(),
                OWNER_KEY_FILE
            ))
        })
    }

    /// The key stored in `profile`, if there is one.
    pub fn load(profile: &Profile) -> Result<Option<Self>, CliError> {
        let Some(file) = profile.read_json::<KeyFile>(OWNER_KEY_FILE)? else {
            return Ok(None);
        };
        let damaged = |why: &str| {
            CliError::usage(format!(
                "{} is damaged: {why}",
                profile.path(OWNER_KEY_FILE).display()
            ))
        };
        if file.kind != "ed25519" {
            return Err(damaged("kind is not ed25519"));
        }
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            b64url_decode(&file.secret_seed)
                .map(Zeroizing::new)
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| damaged("secret_seed is not 32 bytes of base64url"))?,
        );
        let key = Self {
            signing: SigningKey::from_bytes(&seed),
        };
        if key.public_b64() != file.public_key {
            return Err(damaged("public_key does not belong to secret_seed"));
        }
        Ok(Some(key))
    }

    /// Stores the key in `profile` (owner-only).
    pub fn save(&self, profile: &Profile) -> Result<(), CliError> {
        let file = KeyFile {
            kind: "ed25519".into(),
            kid: self.kid(),
            public_key: self.public_b64(),
            secret_seed: b64url_encode(self.signing.as_bytes()),
        };
        profile.write_json(OWNER_KEY_FILE, &file)
    }

    /// The key stored in `profile`, or a new one from `rng`, saved there before it is
    /// returned (so the account is never registered with a key that was not kept).
    /// The flag says whether the key is new.
    pub fn load_or_create(
        profile: &Profile,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Self, bool), CliError> {
        if let Some(k) = Self::load(profile)? {
            return Ok((k, false));
        }
        let k = Self::generate(rng);
        k.save(profile)?;
        Ok((k, true))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rand_core::OsRng;

    use super::*;

    #[test]
    fn a_saved_key_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::new(dir.path().join("p"));
        let (k, new) = OwnerKey::load_or_create(&profile, &mut OsRng).unwrap();
        assert!(new);
        let (again, new) = OwnerKey::load_or_create(&profile, &mut OsRng).unwrap();
        assert!(!new, "an existing key is reused, never replaced");
        assert_eq!(k.public_b64(), again.public_b64());
        assert_eq!(k.kid().len(), 16);
        assert_eq!(b64url_decode(&k.public_b64()).unwrap().len(), 32);
    }

    #[test]
    fn a_key_file_whose_halves_disagree_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::new(dir.path());
        let a = OwnerKey::generate(&mut OsRng);
        let b = OwnerKey::generate(&mut OsRng);
        let file = KeyFile {
            kind: "ed25519".into(),
            kid: a.kid(),
            public_key: a.public_b64(),
            secret_seed: b64url_encode(b.signing.as_bytes()),
        };
        profile.write_json(OWNER_KEY_FILE, &file).unwrap();
        let err = OwnerKey::load(&profile).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_seed() {
        let k = OwnerKey::generate(&mut OsRng);
        let seed = b64url_encode(k.signing.as_bytes());
        let shown = format!("{k:?}");
        assert!(!shown.contains(&seed));
        assert!(shown.contains(&k.kid()));
    }
}
