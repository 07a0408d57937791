//! Per-user secrets of container runs (SPEC 10): the sealing key, the name rules and the limits.
//! The routes (`PUT /api/cockpit/secrets/:name` stores one, `GET /api/cockpit/secrets` lists
//! names only, `DELETE` removes one) are in [`crate::api`]. Values are never sent back: they
//! only reach that user's containers, as environment variables.
//!
//! At rest each value is sealed with ChaCha20-Poly1305 under a 256-bit key kept in a file
//! outside the data directory (`[runner] secrets_key_file`), with a fresh random nonce and the
//! user and name as associated data (a sealed value moved to another user or name does not
//! open). A database copied without that file reveals nothing.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

use crate::error::AppError;
use crate::store::Store;

/// Largest secret value accepted.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Secrets one user may keep.
pub const MAX_SECRETS: usize = 100;

/// The key that seals secrets, loaded from (or made in) its file.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl SecretBox {
    /// Reads the key file, or makes it (32 random bytes, mode 0600, its directory 0700).
    pub fn open_or_create(path: &Path) -> Result<SecretBox, String> {
        let key = match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(bytes) => return Err(format!("{}: expected 32 bytes, found {}", path.display(), bytes.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(path)?,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) })
    }

    /// `(nonce, ciphertext)` of `value` for `user`'s secret `name`.
    pub fn seal(&self, user: &str, name: &str, value: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated(user, name);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: &aad })
            .map_err(|_| "encryption failed".to_string())?;
        Ok((nonce.to_vec(), sealed))
    }

    pub fn open(&self, user: &str, name: &str, nonce: &[u8], sealed: &[u8]) -> Result<String, String> {
        if nonce.len() != 12 {
            return Err(format!("secret {name}: bad nonce"));
        }
        let aad = associated(user, name);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| format!("secret {name} does not open with this key (was the key file replaced?)"))?;
        String::from_utf8(plain).map_err(|_| format!("secret {name} is not UTF-8"))
    }

    /// `user`'s container state kept after the run of `task_id` (its Claude session, for a
    /// follow-up: see `crate::container_runs`), sealed as one blob: the nonce, then the
    /// ciphertext. It holds what the task read and printed, so it is kept like a secret.
    pub fn seal_run_home(&self, user: &str, task_id: &str, archive: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = run_home_associated(user, task_id);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: archive, aad: &aad })
            .map_err(|_| "encryption failed".to_string())?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// The archive [`SecretBox::seal_run_home`] sealed for `user` and `task_id`.
    pub fn open_run_home(&self, user: &str, task_id: &str, blob: &[u8]) -> Result<Vec<u8>, String> {
        if blob.len() < 12 {
            return Err(format!("the kept state of task {task_id} is cut short"));
        }
        let (nonce, sealed) = blob.split_at(12);
        let aad = run_home_associated(user, task_id);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| format!("the kept state of task {task_id} does not open with this key"))
    }

    /// Every secret of `user`, opened: what its containers get as environment.
    pub async fn open_all(&self, store: &dyn Store, user: &str) -> Result<Vec<(String, String)>, AppError> {
        let mut out = Vec::new();
        for (name, nonce, sealed) in store.sealed_secrets(user).await? {
            out.push((name.clone(), self.open(user, &name, &nonce, &sealed).map_err(AppError::Internal)?));
        }
        Ok(out)
    }
}

fn associated(user: &str, name: &str) -> Vec<u8> {
    format!("flightdeck-secret\0{user}\0{name}").into_bytes()
}

fn run_home_associated(user: &str, task_id: &str) -> Vec<u8> {
    format!("flightdeck-run-home\0{user}\0{task_id}").into_bytes()
}

fn create_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        file.write_all(&key).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::write(path, &key).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "made a new key for secrets");
    Ok(key)
}

/// A secret's name: an environment variable name, `[A-Z_][A-Z0-9_]*`, at most 64 characters,
/// and none the relay sets itself.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(
            "must be an environment variable name: A-Z, 0-9 and _, not starting with a digit, 1 to 64 long".into()
        );
    }
    if name.starts_with("FLIGHTDECK_") {
        return Err("FLIGHTDECK_* variables are set by the relay".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_user_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/relay-secrets.key");
        let secrets = SecretBox::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (nonce, sealed) = secrets.seal("alice", "GIT_TOKEN", "ghp_secret").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("ghp_secret"));
        assert_eq!(secrets.open("alice", "GIT_TOKEN", &nonce, &sealed).unwrap(), "ghp_secret");
        assert!(secrets.open("bob", "GIT_TOKEN", &nonce, &sealed).is_err());
        assert!(secrets.open("alice", "OTHER", &nonce, &sealed).is_err());
        // The same file gives the same key; another file does not open it.
        let again = SecretBox::open_or_create(&path).unwrap();
        assert_eq!(again.open("alice", "GIT_TOKEN", &nonce, &sealed).unwrap(), "ghp_secret");
        let other = SecretBox::open_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open("alice", "GIT_TOKEN", &nonce, &sealed).is_err());
    }

    #[test]
    fn a_kept_run_home_opens_only_for_its_user_and_task() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretBox::open_or_create(&dir.path().join("k")).unwrap();
        let blob = secrets.seal_run_home("alice", "t-1", b"tar bytes").unwrap();
        assert_eq!(secrets.open_run_home("alice", "t-1", &blob).unwrap(), b"tar bytes");
        assert!(secrets.open_run_home("alice", "t-2", &blob).is_err());
        assert!(secrets.open_run_home("bob", "t-1", &blob).is_err());
        assert!(secrets.open_run_home("alice", "t-1", &blob[..5]).is_err());
    }

    #[test]
    fn names_are_environment_variable_names() {
        for ok in ["GIT_TOKEN", "ANTHROPIC_API_KEY", "_X", "A1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "lower", "1ABC", "A-B", "FLIGHTDECK_AGENT_KEY", &"A".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
