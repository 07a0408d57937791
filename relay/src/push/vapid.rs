//! The relay's VAPID key (RFC 8292): one P-256 key pair per relay, made on first use and kept in
//! the store, so every node signs with it; the `Authorization: vapid t=<JWT>, k=<key>` header.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand::RngCore;
use serde::Serialize;

/// A VAPID JWT is valid at most this long (RFC 8292: no more than 24 hours).
pub const MAX_JWT_SECS: i64 = 12 * 3600;

/// The private key. Never printed: `Debug` shows only the public half.
#[derive(Clone)]
pub struct VapidKey {
    signing: SigningKey,
    public: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey").field("public", &self.public).field("private", &"<redacted>").finish()
    }
}

/// The claims of a VAPID JWT.
#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: i64,
    sub: &'a str,
}

impl VapidKey {
    /// 32 random bytes that make a valid private scalar (almost every draw does).
    pub fn generate_secret() -> Vec<u8> {
        loop {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            if SigningKey::from_slice(&bytes).is_ok() {
                return bytes.to_vec();
            }
        }
    }

    /// The key from its stored scalar (32 bytes, big-endian).
    pub fn from_secret(bytes: &[u8]) -> Result<VapidKey, String> {
        let signing =
            SigningKey::from_slice(bytes).map_err(|_| "the stored VAPID key is not a P-256 key".to_string())?;
        let point = signing.verifying_key().to_encoded_point(false);
        let public = URL_SAFE_NO_PAD.encode(point.as_bytes());
        Ok(VapidKey { signing, public })
    }

    /// The public key: base64url of the uncompressed point (65 bytes), as browsers take it.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// `vapid t=<JWT>, k=<public key>` for a push to `audience` (the endpoint's origin), valid
    /// until `exp` (seconds since the epoch).
    pub fn authorization(&self, audience: &str, exp: i64, contact: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::to_vec(&Claims { aud: audience, exp, sub: contact }).unwrap_or_default();
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
        // ES256 in a JWT is the raw r || s (64 bytes), not DER.
        let signature: Signature = self.signing.sign(signed.as_bytes());
        let jwt = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        format!("vapid t={jwt}, k={}", self.public)
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    use super::*;

    #[test]
    fn the_jwt_verifies_with_the_public_key_and_debug_hides_the_private_one() {
        let key = VapidKey::from_secret(&VapidKey::generate_secret()).unwrap();
        let header = key.authorization("https://push.example", 1_700_000_000, "mailto:ops@example.com");
        let (t, k) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        assert_eq!(k, key.public_key());
        let public = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
        let (signed, signature) = t.rsplit_once('.').unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        public.verify(signed.as_bytes(), &signature).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(signed.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://push.example");
        assert_eq!(claims["exp"], 1_700_000_000);
        let debug = format!("{key:?}");
        assert!(debug.contains("<redacted>") && debug.contains(key.public_key()), "{debug}");
    }
}
