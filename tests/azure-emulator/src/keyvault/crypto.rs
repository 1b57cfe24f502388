//! Real RSA for emulated keys: lazy key generation, the public JWK parts, and wrap/unwrap with the algorithms
//! Storage and our handler use.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey};

use super::store::KeyVersion;

/// The key-wrapping algorithms Key Vault offers for RSA keys that we emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapAlgorithm {
    RsaOaep,
    RsaOaep256,
    Rsa15,
}

impl WrapAlgorithm {
    pub fn parse(alg: &str) -> Option<Self> {
        match alg {
            "RSA-OAEP" => Some(Self::RsaOaep),
            "RSA-OAEP-256" => Some(Self::RsaOaep256),
            "RSA1_5" => Some(Self::Rsa15),
            _ => None,
        }
    }
}

/// The private key of a version, generated on first use. Generation is slow, so callers do this outside any lock.
pub fn material(version: &KeyVersion) -> Result<&RsaPrivateKey, String> {
    if let Some(key) = version.material.get() {
        return Ok(key);
    }
    let bits = usize::try_from(version.size).map_err(|e| e.to_string())?;
    let generated = RsaPrivateKey::new(&mut rand::thread_rng(), bits).map_err(|e| format!("RSA generation: {e}"))?;
    // Another request may have won the race; either key is fine, the first one stored stays.
    let _ = version.material.set(generated);
    version.material.get().ok_or_else(|| "RSA material vanished".to_owned())
}

/// `n` and `e` of the public key, base64url without padding (JWK).
pub fn public_parts(key: &RsaPrivateKey) -> (String, String) {
    (URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()), URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()))
}

pub fn wrap(key: &RsaPrivateKey, alg: WrapAlgorithm, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let public = key.to_public_key();
    let mut rng = rand::thread_rng();
    let result = match alg {
        WrapAlgorithm::RsaOaep => public.encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), plaintext),
        WrapAlgorithm::RsaOaep256 => public.encrypt(&mut rng, Oaep::new::<sha2::Sha256>(), plaintext),
        WrapAlgorithm::Rsa15 => public.encrypt(&mut rng, Pkcs1v15Encrypt, plaintext),
    };
    result.map_err(|e| e.to_string())
}

pub fn unwrap(key: &RsaPrivateKey, alg: WrapAlgorithm, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
    let result = match alg {
        WrapAlgorithm::RsaOaep => key.decrypt(Oaep::new::<sha1::Sha1>(), ciphertext),
        WrapAlgorithm::RsaOaep256 => key.decrypt(Oaep::new::<sha2::Sha256>(), ciphertext),
        WrapAlgorithm::Rsa15 => key.decrypt(Pkcs1v15Encrypt, ciphertext),
    };
    result.map_err(|e| e.to_string())
}

/// Decodes base64url with or without padding, as Key Vault accepts both.
pub fn decode_b64url(value: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).ok()
}

pub fn encode_b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
