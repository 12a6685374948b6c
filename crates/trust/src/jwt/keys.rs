//! The ring of JWT signing keys, and its rotation.
//!
//! One key is **current**: it signs every new token. Every
//! [`KeyRingConfig::rotation_interval`] (7 days by default) [`KeyRing::rotate_if_due`]
//! makes a new current key; the old one stops signing but keeps **verifying** for
//! [`KeyRingConfig::overlap`] (8 days by default: longer than the longest token lifetime,
//! the 7-day refresh token, so every token outlives no key that signed it). After that the
//! key is **retired**: its private half is dropped and tokens naming its kid get
//! [`TrustError::KeyRetired`]. The last [`MAX_RETIRED_REMEMBERED`] retired kids are
//! remembered for that answer; older ones become unknown.
//!
//! Rotation is driven by the caller (a periodic task calls `rotate_if_due` with the
//! clock's time and then saves the ring); nothing here reads the clock.
//!
//! The ring persists as one blob sealed under [`KEYRING_LABEL`] (see [`crate::seal`]),
//! stored as [`KEYRING_FILE`] by [`KeyRing::save`]. Inside is JSON with the private keys:
//!
//! ```json
//! {"v":1,"keys":[{"kid":"…","secret":"<base64url 32-byte seed>","created_at":…,
//!  "superseded_at":null}],"retired":[{"kid":"…","retired_at":…}]}
//! ```
//!
//! with the current key first. Sealing the whole ring (not each key) also protects the
//! timestamps: nobody can extend a key's life by editing the file.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use tether_proto::{KeyId, UnixMillis};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::b64;
use super::jwks::{Jwk, Jwks};
use crate::error::TrustError;
use crate::keystore::Keystore;
use crate::random;

/// Keystore name of the sealed key ring.
pub const KEYRING_FILE: &str = "jwt-keyring.sealed";
/// Purpose label the key ring is sealed under.
pub const KEYRING_LABEL: &str = "tether/jwt/keyring/v1";
/// How many retired kids are remembered (to answer "retired" rather than "unknown").
pub const MAX_RETIRED_REMEMBERED: usize = 64;

const DAY_SECS: u64 = 24 * 3600;

/// When keys rotate and how long an old key keeps verifying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRingConfig {
    /// Age at which the current key is replaced (default 7 days).
    pub rotation_interval: Duration,
    /// How long a replaced key keeps verifying (default 8 days). Must be at least the
    /// longest token lifetime; [`Issuer::new`](super::Issuer::new) checks this.
    pub overlap: Duration,
}

impl Default for KeyRingConfig {
    fn default() -> Self {
        Self {
            rotation_interval: Duration::from_secs(7 * DAY_SECS),
            overlap: Duration::from_secs(8 * DAY_SECS),
        }
    }
}

impl KeyRingConfig {
    /// Both durations must be at least a minute.
    pub fn validate(&self) -> Result<(), TrustError> {
        let minute = Duration::from_secs(60);
        if self.rotation_interval < minute || self.overlap < minute {
            return Err(TrustError::InvalidConfig(
                "key ring rotation_interval and overlap must be at least a minute".into(),
            ));
        }
        Ok(())
    }
}

/// What the ring says about a kid at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// The signing key.
    Current,
    /// Replaced, still verifying until the given time (exclusive).
    Verifying {
        /// End of the overlap window.
        until: UnixMillis,
    },
    /// Rotated out past its overlap window.
    Retired,
    /// Never known, or forgotten.
    Unknown,
}

struct RingKey {
    kid: KeyId,
    signing: SigningKey,
    created_at: UnixMillis,
    superseded_at: Option<UnixMillis>,
}

impl RingKey {
    fn generate(now: UnixMillis) -> Result<Self, TrustError> {
        let seed = Zeroizing::new(random::array::<32>()?);
        Ok(Self::from_seed(&seed, now, None))
    }

    fn from_seed(
        seed: &[u8; 32],
        created_at: UnixMillis,
        superseded_at: Option<UnixMillis>,
    ) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let kid = KeyId::for_ed25519(signing.verifying_key().as_bytes());
        Self {
            kid,
            signing,
            created_at,
            superseded_at,
        }
    }
}

impl fmt::Debug for RingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("superseded_at", &self.superseded_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetiredKid {
    kid: KeyId,
    retired_at: UnixMillis,
}

/// The signing keys: one current, some still verifying, and the kids of retired ones.
#[derive(Debug)]
pub struct KeyRing {
    config: KeyRingConfig,
    current: RingKey,
    /// Replaced keys still inside (or not yet pruned past) their overlap, newest first.
    previous: Vec<RingKey>,
    retired: Vec<RetiredKid>,
}

impl KeyRing {
    /// A ring with one fresh key created at `now`.
    pub fn generate(config: KeyRingConfig, now: UnixMillis) -> Result<Self, TrustError> {
        config.validate()?;
        Ok(Self {
            config,
            current: RingKey::generate(now)?,
            previous: Vec::new(),
            retired: Vec::new(),
        })
    }

    /// The ring stored in `keystore`, or a new one (saved at once) if there is none.
    pub fn load_or_generate(
        keystore: &dyn Keystore,
        config: KeyRingConfig,
        now: UnixMillis,
    ) -> Result<Self, TrustError> {
        if let Some(ring) = Self::load(keystore, config.clone())? {
            return Ok(ring);
        }
        let ring = Self::generate(config, now)?;
        ring.save(keystore)?;
        Ok(ring)
    }

    /// The configuration.
    pub fn config(&self) -> &KeyRingConfig {
        &self.config
    }

    /// The kid of the key that signs new tokens.
    pub fn current_kid(&self) -> &KeyId {
        &self.current.kid
    }

    /// What the ring says about `kid` at `now`.
    pub fn state(&self, kid: &KeyId, now: UnixMillis) -> KeyState {
        if &self.current.kid == kid {
            return KeyState::Current;
        }
        if let Some(k) = self.previous.iter().find(|k| &k.kid == kid) {
            let until = self.overlap_end(k);
            return if now < until {
                KeyState::Verifying { until }
            } else {
                KeyState::Retired
            };
        }
        if self.retired.iter().any(|r| &r.kid == kid) {
            return KeyState::Retired;
        }
        KeyState::Unknown
    }

    /// The public key to verify a token naming `kid` at `now`, or
    /// [`TrustError::UnknownKid`] / [`TrustError::KeyRetired`].
    pub fn verifying_key(&self, kid: &KeyId, now: UnixMillis) -> Result<VerifyingKey, TrustError> {
        match self.state(kid, now) {
            KeyState::Current => Ok(self.current.signing.verifying_key()),
            KeyState::Verifying { .. } => self
                .previous
                .iter()
                .find(|k| &k.kid == kid)
                .map(|k| k.signing.verifying_key())
                .ok_or_else(|| TrustError::UnknownKid(kid.to_string())),
            KeyState::Retired => Err(TrustError::KeyRetired(kid.to_string())),
            KeyState::Unknown => Err(TrustError::UnknownKid(kid.to_string())),
        }
    }

    /// Rotates if the current key is at least [`KeyRingConfig::rotation_interval`] old,
    /// and retires replaced keys whose overlap has ended. Returns whether it rotated.
    pub fn rotate_if_due(&mut self, now: UnixMillis) -> Result<bool, TrustError> {
        let due = now
            >= self
                .current
                .created_at
                .saturating_add(self.config.rotation_interval);
        if due {
            self.rotate(now)?;
        } else {
            self.prune(now);
        }
        Ok(due)
    }

    /// Rotates now, whatever the current key's age (e.g. after a suspected leak, together
    /// with [`KeyRing::retire`]). Returns the new current kid.
    pub fn rotate(&mut self, now: UnixMillis) -> Result<KeyId, TrustError> {
        let mut old = std::mem::replace(&mut self.current, RingKey::generate(now)?);
        old.superseded_at = Some(now);
        self.previous.insert(0, old);
        self.prune(now);
        Ok(self.current.kid.clone())
    }

    /// Retires a replaced key at once, ending its overlap window early (for a key that
    /// may have leaked). The current key cannot be retired: rotate first. Returns whether
    /// a key was retired.
    pub fn retire(&mut self, kid: &KeyId, now: UnixMillis) -> bool {
        let Some(pos) = self.previous.iter().position(|k| &k.kid == kid) else {
            return false;
        };
        let key = self.previous.remove(pos);
        self.remember_retired(key.kid.clone(), now);
        true
    }

    /// The JWKS of the keys verifying at `now`: the current one first, then those in
    /// their overlap window, newest first.
    pub fn jwks(&self, now: UnixMillis) -> Jwks {
        let mut keys = vec![Jwk::ed25519(
            &self.current.kid,
            &self.current.signing.verifying_key(),
        )];
        keys.extend(
            self.previous
                .iter()
                .filter(|k| now < self.overlap_end(k))
                .map(|k| Jwk::ed25519(&k.kid, &k.signing.verifying_key())),
        );
        Jwks { keys }
    }

    /// Signs with the current key.
    pub(crate) fn sign(&self, msg: &[u8]) -> (KeyId, Signature) {
        (self.current.kid.clone(), self.current.signing.sign(msg))
    }

    #[cfg(test)]
    pub(crate) fn current_secret(&self) -> [u8; 32] {
        self.current.signing.to_bytes()
    }

    fn overlap_end(&self, k: &RingKey) -> UnixMillis {
        k.superseded_at
            .unwrap_or(k.created_at)
            .saturating_add(self.config.overlap)
    }

    fn prune(&mut self, now: UnixMillis) {
        let (keep, gone): (Vec<RingKey>, Vec<RingKey>) = std::mem::take(&mut self.previous)
            .into_iter()
            .partition(|k| now < self.overlap_end(k));
        self.previous = keep;
        for k in gone {
            let at = self.overlap_end(&k);
            self.remember_retired(k.kid.clone(), at);
            // `k` (and its private key, zeroized on drop) goes here.
        }
    }

    fn remember_retired(&mut self, kid: KeyId, at: UnixMillis) {
        self.retired.retain(|r| r.kid != kid);
        self.retired.insert(
            0,
            RetiredKid {
                kid,
                retired_at: at,
            },
        );
        self.retired.truncate(MAX_RETIRED_REMEMBERED);
    }

    // ---- persistence ----

    /// The whole ring, sealed by `keystore` under [`KEYRING_LABEL`].
    pub fn seal(&self, keystore: &dyn Keystore) -> Result<Vec<u8>, TrustError> {
        let stored = StoredRing {
            v: 1,
            keys: std::iter::once(&self.current)
                .chain(&self.previous)
                .map(|k| StoredKey {
                    kid: k.kid.clone(),
                    secret: b64::encode(k.signing.as_bytes()),
                    created_at: k.created_at,
                    superseded_at: k.superseded_at,
                })
                .collect(),
            retired: self.retired.clone(),
        };
        // Sized up front so the buffer holding the secrets is not reallocated (which
        // would leave unwiped copies behind).
        let capacity = stored
            .keys
            .len()
            .saturating_add(stored.retired.len())
            .saturating_add(1);
        let mut json = Zeroizing::new(Vec::with_capacity(capacity.saturating_mul(256)));
        serde_json::to_writer(&mut *json, &stored)
            .map_err(|e| TrustError::corrupt("key ring", e))?;
        keystore.seal(KEYRING_LABEL, &json)
    }

    /// A ring from [`KeyRing::seal`]'s output.
    pub fn unseal(
        keystore: &dyn Keystore,
        sealed: &[u8],
        config: KeyRingConfig,
    ) -> Result<Self, TrustError> {
        config.validate()?;
        let json = keystore.open(KEYRING_LABEL, sealed)?;
        let stored: StoredRing =
            serde_json::from_slice(&json).map_err(|e| TrustError::corrupt("key ring", e))?;
        if stored.v != 1 {
            return Err(TrustError::corrupt(
                "key ring",
                format!("version {}", stored.v),
            ));
        }
        let mut keys = Vec::with_capacity(stored.keys.len());
        for k in &stored.keys {
            let seed = Zeroizing::new(b64::decode(&k.secret).unwrap_or_default());
            let seed: &[u8; 32] = seed
                .as_slice()
                .try_into()
                .map_err(|_| TrustError::corrupt("key ring", "a secret is not 32 bytes"))?;
            let key = RingKey::from_seed(seed, k.created_at, k.superseded_at);
            if key.kid != k.kid {
                return Err(TrustError::corrupt(
                    "key ring",
                    "a kid does not match its key",
                ));
            }
            keys.push(key);
        }
        let mut keys = keys.into_iter();
        let current = keys
            .next()
            .ok_or_else(|| TrustError::corrupt("key ring", "no keys"))?;
        if current.superseded_at.is_some() {
            return Err(TrustError::corrupt(
                "key ring",
                "the first key is not current",
            ));
        }
        Ok(Self {
            config,
            current,
            previous: keys.collect(),
            retired: stored.retired.clone(),
        })
    }

    /// Seals the ring and stores it as [`KEYRING_FILE`].
    pub fn save(&self, keystore: &dyn Keystore) -> Result<(), TrustError> {
        keystore.write(KEYRING_FILE, &self.seal(keystore)?)
    }

    /// The ring stored as [`KEYRING_FILE`], if any.
    pub fn load(
        keystore: &dyn Keystore,
        config: KeyRingConfig,
    ) -> Result<Option<Self>, TrustError> {
        match keystore.read(KEYRING_FILE)? {
            Some(sealed) => Self::unseal(keystore, &sealed, config).map(Some),
            None => Ok(None),
        }
    }
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    #[zeroize(skip)]
    kid: KeyId,
    secret: String,
    #[zeroize(skip)]
    created_at: UnixMillis,
    #[zeroize(skip)]
    superseded_at: Option<UnixMillis>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRing {
    v: u32,
    keys: Vec<StoredKey>,
    retired: Vec<RetiredKid>,
}

/// A [`KeyRing`] shared between an [`Issuer`](super::Issuer), a
/// [`Validator`](super::Validator) and the task that rotates it. Locks are held only for
/// the few microseconds of a lookup, a signature or a rotation; never across I/O by this
/// crate.
#[derive(Debug, Clone)]
pub struct SharedKeyRing(Arc<RwLock<KeyRing>>);

impl SharedKeyRing {
    /// Shares `ring`.
    pub fn new(ring: KeyRing) -> Self {
        Self(Arc::new(RwLock::new(ring)))
    }

    /// Read access. (A panic while writing cannot leave the ring half-rotated: `rotate`
    /// swaps whole keys, so a poisoned lock is still consistent and is used as is.)
    pub fn read(&self) -> RwLockReadGuard<'_, KeyRing> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access.
    pub fn write(&self) -> RwLockWriteGuard<'_, KeyRing> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`KeyRing::rotate_if_due`].
    pub fn rotate_if_due(&self, now: UnixMillis) -> Result<bool, TrustError> {
        self.write().rotate_if_due(now)
    }

    /// [`KeyRing::jwks`].
    pub fn jwks(&self, now: UnixMillis) -> Jwks {
        self.read().jwks(now)
    }
}
