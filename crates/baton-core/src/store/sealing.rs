//! Secrets at rest that the database alone must not give away — today the private halves of
//! the signing keys the server holds. They are sealed (ChaCha20-Poly1305) with a
//! key-encryption key kept outside the database: `BATON_KEY_ENCRYPTION_KEY` (base64 of 32
//! bytes), or the file `key_encryption_key_file` names, or else a file the server creates in
//! its data directory at first start (mode 0600). A KMS fits the same seam: have it write the
//! key into the environment or the file when the server starts (a systemd credential, a Vault
//! agent template). Each sealed value is bound to its row, so a value copied to another row
//! does not open.

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{Error, config::Settings};

/// What a sealed value starts with (and its format's version).
const PREFIX: &str = "sealed:v1:";
/// The key file made in the data directory when no key is configured.
pub const DEFAULT_FILE: &str = "key-encryption.key";

/// The key-encryption key, ready to seal and open.
pub struct Sealer {
    key: LessSafeKey,
    /// Where the key came from, for messages.
    source: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({})", self.source)
    }
}

impl Sealer {
    /// The key the settings name; with none named, the data directory's key file, made now if
    /// it is not there yet (the returned flag says so, for the start-up message).
    pub fn from_settings(settings: &Settings) -> Result<(Self, Option<PathBuf>), Error> {
        if let Some(key) = &settings.key_encryption_key {
            return Ok((Self::from_base64(key.expose(), "BATON_KEY_ENCRYPTION_KEY")?, None));
        }
        let (path, made) = match &settings.key_encryption_key_file {
            Some(path) => (path.clone(), false),
            None => {
                let path = settings.data_dir.join(DEFAULT_FILE);
                let made = !path.exists() && make_key_file(&path)?;
                (path, made)
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Config(format!("cannot read the key-encryption key {}: {e}", path.display())))?;
        let sealer = Self::from_base64(&text, &path.display().to_string())?;
        Ok((sealer, made.then_some(path)))
    }

    fn from_base64(text: &str, source: &str) -> Result<Self, Error> {
        let bytes: [u8; 32] = B64
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Config(format!("{source}: a key-encryption key is 32 bytes, base64")))?;
        Ok(Self::new(&bytes, source))
    }

    /// A sealer over `key` (tests and the key file).
    pub fn new(key: &[u8; 32], source: &str) -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).unwrap_or_else(|_| unreachable!()));
        Self { key, source: source.to_owned() }
    }

    /// Whether `stored` is sealed (rather than from before sealing existed).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// Seals `secret` for the row named by `binding`.
    pub fn seal(&self, secret: &[u8], binding: &str) -> Result<String, Error> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = secret.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(binding.as_bytes()), &mut sealed)
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", B64.encode(out)))
    }

    /// Opens what [`Sealer::seal`] made for the same `binding`.
    pub fn open(&self, stored: &str, binding: &str) -> Result<Vec<u8>, Error> {
        let wrong = || {
            Error::Config(format!(
                "the key-encryption key ({}) does not open a secret stored in the database; was it changed? \
                 Start with the key the database was sealed with",
                self.source
            ))
        };
        let bytes = stored.strip_prefix(PREFIX).and_then(|b| B64.decode(b).ok()).ok_or_else(wrong)?;
        if bytes.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut sealed = sealed.to_vec();
        let opened = self.key.open_in_place(nonce, Aad::from(binding.as_bytes()), &mut sealed).map_err(|_| wrong())?;
        Ok(opened.to_vec())
    }
}

/// Writes a fresh random key to `path`, readable by this user only. `true` when made.
fn make_key_file(path: &Path) -> Result<bool, Error> {
    let cannot =
        |e: std::io::Error| Error::Config(format!("cannot create the key-encryption key {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(cannot)?;
    }
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(cannot)?;
    std::io::Write::write_all(&mut file, format!("{}\n", B64.encode(key)).as_bytes()).map_err(cannot)?;
    file.sync_all().map_err(cannot)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_for_its_row() {
        let sealer = Sealer::new(&[7; 32], "test");
        let sealed = sealer.seal(b"the seed", "signing_keys/t1/k1").expect("seals");
        assert!(Sealer::is_sealed(&sealed));
        assert!(!sealed.contains(&B64.encode(b"the seed")));
        assert_eq!(sealer.open(&sealed, "signing_keys/t1/k1").expect("opens"), b"the seed");
        assert!(sealer.open(&sealed, "signing_keys/t2/k1").is_err(), "another row");
        assert!(Sealer::new(&[8; 32], "other").open(&sealed, "signing_keys/t1/k1").is_err(), "another key");
        assert!(sealer.open("sealed:v1:AAAA", "signing_keys/t1/k1").is_err());
        assert!(sealer.open("plain", "signing_keys/t1/k1").is_err());
    }

    #[test]
    fn the_key_file_is_made_once_and_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings { data_dir: dir.path().to_path_buf(), ..Settings::default() };
        let (first, made) = Sealer::from_settings(&settings).expect("made");
        assert_eq!(made, Some(dir.path().join(DEFAULT_FILE)));
        let (second, made) = Sealer::from_settings(&settings).expect("read");
        assert_eq!(made, None);
        let sealed = first.seal(b"x", "b").expect("seals");
        assert_eq!(second.open(&sealed, "b").expect("the same key"), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(DEFAULT_FILE)).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
