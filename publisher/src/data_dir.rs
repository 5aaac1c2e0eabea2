//! The publisher's data directory: where each file lives, `init`, and loading the
//! signing key, settings and TLS material from it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use skycast_schema::{sign_root, PublicKey, Root, SecretKey, SigningKeyEntry, VerifiedRoot};

use crate::db::Db;
use crate::error::{PublisherError, Result};
use crate::store::{RootFile, Store, StoreLock};
use crate::tls;

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// Settings `init` writes and later commands read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The URL players use to reach `serve`; printed into player configs.
    pub public_url: String,
    /// Set on a second site (`follow`): the primary's store this is a
    /// read-only copy of. Such a directory has no signing key and never signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
}

/// What `init` produced, for the caller to print.
pub struct InitReport {
    pub public_key: PublicKey,
    /// The root key files written, to be moved to offline storage.
    pub root_key_files: Vec<PathBuf>,
    /// Set only when the password was generated; shown once, never stored in clear.
    pub generated_admin_password: Option<String>,
}

pub struct InitOptions {
    pub public_url: String,
    pub admin_user: String,
    pub admin_password: Option<String>,
    /// Use this certificate and key instead of generating a local CA.
    pub tls_cert_and_key: Option<(PathBuf, PathBuf)>,
    /// Extra DNS names or IP addresses for the generated server certificate.
    pub extra_names: Vec<String>,
    /// The offline root keys of the trust root `init` makes.
    pub root: RootKeysSpec,
}

/// How many root keys `init` makes, how many must sign a change of the root,
/// and where their files go (the admin moves them off the machine).
#[derive(Debug, Clone)]
pub struct RootKeysSpec {
    pub count: usize,
    pub threshold: usize,
    /// Default: `<data>/root-keys/`.
    pub dir: Option<PathBuf>,
}

impl Default for RootKeysSpec {
    fn default() -> Self {
        RootKeysSpec {
            count: 1,
            threshold: 1,
            dir: None,
        }
    }
}

/// What `follow` needs to make a second site's directory: no signing key, the
/// primary's public key to verify with, and TLS material from the primary's CA
/// (`skycast-publisher tls issue` on the primary) so players reach both sites
/// with the one CA they pin.
pub struct FollowerInit {
    /// The primary's store, as a git URL (`--from`).
    pub from: String,
    pub public_url: String,
    pub trusted_key: PublicKey,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub ca_cert: PathBuf,
    pub admin_user: String,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// Opens an initialised directory, with a clear error when it is not one.
    pub fn open(root: impl Into<PathBuf>) -> Result<DataDir> {
        let dir = DataDir::new(root);
        if !dir.settings_path().exists() {
            return Err(PublisherError::NotInitialised { path: dir.root });
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn store_path(&self) -> PathBuf {
        self.root.join("store.git")
    }
    pub fn db_path(&self) -> PathBuf {
        self.root.join("publisher.sqlite")
    }
    pub fn settings_path(&self) -> PathBuf {
        self.root.join("publisher.toml")
    }
    pub fn secret_key_path(&self) -> PathBuf {
        self.root.join("keys/signing.key")
    }
    pub fn public_key_path(&self) -> PathBuf {
        self.root.join("keys/signing.pub")
    }
    /// Every trust root this primary made: `roots/<N>.yaml` and `roots/<N>.sig`.
    pub fn roots_dir(&self) -> PathBuf {
        self.root.join("roots")
    }
    pub fn ca_cert_path(&self) -> PathBuf {
        self.root.join("tls/ca.pem")
    }
    pub fn ca_key_path(&self) -> PathBuf {
        self.root.join("tls/ca.key")
    }
    pub fn server_cert_path(&self) -> PathBuf {
        self.root.join("tls/server.pem")
    }
    pub fn server_key_path(&self) -> PathBuf {
        self.root.join("tls/server.key")
    }
    pub fn store_lock_path(&self) -> PathBuf {
        self.root.join("store.lock")
    }

    /// Waits for, then holds, the right to write the store (see [`StoreLock`]).
    pub fn lock_store(&self) -> Result<StoreLock> {
        Ok(StoreLock::acquire(&self.store_lock_path())?)
    }

    pub fn init(&self, opts: InitOptions, seed: [u8; 32]) -> Result<InitReport> {
        if self.settings_path().exists() || self.store_path().exists() {
            return Err(PublisherError::AlreadyInitialised {
                path: self.root.clone(),
            });
        }
        // Owner-only (0700): keys, the database and the store are nobody else's.
        for dir in [self.root.clone(), self.root.join("keys"), self.root.join("tls")] {
            create_private_dir(&dir)?;
        }
        Store::init(&self.store_path())?;
        set_mode(&self.store_path(), 0o700)?;

        let secret = SecretKey::from_seed(seed);
        write_private(&self.secret_key_path(), secret.to_file_text().as_bytes())?;
        write_public(
            &self.public_key_path(),
            format!("{}\n", secret.public()).as_bytes(),
        )?;

        match &opts.tls_cert_and_key {
            Some((cert, key)) => {
                let cert_pem = fs::read(cert).map_err(PublisherError::io("read", cert))?;
                let key_pem = fs::read(key).map_err(PublisherError::io("read", key))?;
                tls::server_config(&cert_pem, &key_pem)?; // refuse unusable material now, not at serve time
                write_public(&self.server_cert_path(), &cert_pem)?;
                write_private(&self.server_key_path(), &key_pem)?;
                // Players pin the chain they were given; with a supplied cert that is the cert itself.
                write_public(&self.ca_cert_path(), &cert_pem)?;
            }
            None => {
                let material = tls::generate(&opts.extra_names, Utc::now())?;
                write_public(&self.ca_cert_path(), material.ca_cert_pem.as_bytes())?;
                write_private(&self.ca_key_path(), material.ca_key_pem.as_bytes())?;
                write_public(&self.server_cert_path(), material.server_cert_pem.as_bytes())?;
                write_private(&self.server_key_path(), material.server_key_pem.as_bytes())?;
            }
        }

        let root_key_files = self.make_root(&opts.root, &secret)?;

        let db = Db::open(&self.db_path())?;
        let (password, generated) = match opts.admin_password {
            Some(p) => (p, None),
            None => {
                let p = crate::random_token();
                (p.clone(), Some(p))
            }
        };
        db.create_user(&opts.admin_user, &password, crate::db::Role::Admin)?;

        // Written last: its presence marks a complete init.
        let settings = Settings {
            public_url: opts.public_url,
            follows: None,
        };
        let text = toml::to_string(&settings).map_err(|e| PublisherError::Internal(e.to_string()))?;
        write_public(&self.settings_path(), text.as_bytes())?;
        Ok(InitReport {
            public_key: secret.public(),
            root_key_files,
            generated_admin_password: generated,
        })
    }

    /// Root 1: `spec.count` new root keys in their files, `spec.threshold` of them
    /// to change it, the online key `signing` and this directory's CA.
    fn make_root(&self, spec: &RootKeysSpec, signing: &SecretKey) -> Result<Vec<PathBuf>> {
        if spec.count == 0 || spec.threshold == 0 || spec.threshold > spec.count {
            return Err(PublisherError::BadRequest(format!(
                "a root threshold of {} with {} root key(s) cannot work: give 1 <= threshold <= keys",
                spec.threshold, spec.count
            )));
        }
        let dir = spec.dir.clone().unwrap_or_else(|| self.root.join("root-keys"));
        create_private_dir(&dir)?;
        let mut keys = Vec::new();
        let mut files = Vec::new();
        for _ in 0..spec.count {
            let key = SecretKey::from_seed(crate::random_bytes::<32>());
            let path = dir.join(format!("root-{}.key", key.public().id()));
            write_private(&path, key.to_file_text().as_bytes())?;
            keys.push(key);
            files.push(path);
        }
        let ca = fs::read_to_string(self.ca_cert_path())
            .map_err(PublisherError::io("read", self.ca_cert_path()))?;
        write_initial_root(
            self,
            &keys,
            spec.threshold,
            signing.public(),
            &ca,
            chrono::Utc::now(),
        )?;
        Ok(files)
    }

    /// Makes a second site's directory (see [`FollowerInit`]); its store stays
    /// empty until the first fetch from the primary. Returns the generated
    /// password of its admin user (shown once).
    pub fn init_follower(&self, opts: FollowerInit) -> Result<String> {
        if self.settings_path().exists() || self.store_path().exists() {
            return Err(PublisherError::AlreadyInitialised {
                path: self.root.clone(),
            });
        }
        let cert_pem = fs::read(&opts.server_cert).map_err(PublisherError::io("read", &opts.server_cert))?;
        let key_pem = fs::read(&opts.server_key).map_err(PublisherError::io("read", &opts.server_key))?;
        let ca_pem = fs::read(&opts.ca_cert).map_err(PublisherError::io("read", &opts.ca_cert))?;
        tls::server_config(&cert_pem, &key_pem)?; // refuse unusable material now, not at serve time
        for dir in [self.root.clone(), self.root.join("keys"), self.root.join("tls")] {
            create_private_dir(&dir)?;
        }
        Store::init(&self.store_path())?;
        set_mode(&self.store_path(), 0o700)?;
        write_public(
            &self.public_key_path(),
            format!("{}\n", opts.trusted_key).as_bytes(),
        )?;
        write_public(&self.server_cert_path(), &cert_pem)?;
        write_private(&self.server_key_path(), &key_pem)?;
        write_public(&self.ca_cert_path(), &ca_pem)?;
        let db = Db::open(&self.db_path())?;
        let password = crate::random_token();
        db.create_user(&opts.admin_user, &password, crate::db::Role::Admin)?;
        // Written last: its presence marks a complete init.
        let settings = Settings {
            public_url: opts.public_url,
            follows: Some(opts.from),
        };
        let text = toml::to_string(&settings).map_err(|e| PublisherError::Internal(e.to_string()))?;
        write_public(&self.settings_path(), text.as_bytes())?;
        Ok(password)
    }

    /// Writes into `out` a new server certificate from this directory's CA
    /// (`server.pem`, `server.key` 0600) and the CA itself (`ca.pem`): what a
    /// second site serves with, so players keep the one CA they pin. Refuses to
    /// overwrite files already there.
    pub fn issue_server_cert(&self, names: &[String], out: &Path) -> Result<()> {
        self.refuse_if_follower()?;
        let ca_key = fs::read_to_string(self.ca_key_path()).map_err(PublisherError::io(
            "read the CA key (only a directory made by `init` with its own CA can issue)",
            self.ca_key_path(),
        ))?;
        let ca_cert =
            fs::read(self.ca_cert_path()).map_err(PublisherError::io("read", self.ca_cert_path()))?;
        let (cert, key) = tls::issue(&ca_key, names, Utc::now())?;
        fs::create_dir_all(out).map_err(PublisherError::io("create", out))?;
        write_public(&out.join("server.pem"), cert.as_bytes())?;
        write_private(&out.join("server.key"), key.as_bytes())?;
        write_public(&out.join("ca.pem"), &ca_cert)
    }

    /// `tls renew`: a new server certificate and key from this directory's CA,
    /// for the names the current one holds, valid [`tls::SERVER_CERT_DAYS`]
    /// from `now`. The key is renamed into place before the certificate, and
    /// `serve` reloads the pair at its next handshake. Returns the new expiry.
    pub fn renew_server_cert(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        self.refuse_if_follower()?;
        let ca_key = fs::read_to_string(self.ca_key_path()).map_err(PublisherError::io(
            "read the CA key (only a directory made by `init` with its own CA can renew)",
            self.ca_key_path(),
        ))?;
        let current = fs::read_to_string(self.server_cert_path())
            .map_err(PublisherError::io("read", self.server_cert_path()))?;
        let (_, names) = tls::certificate_info(&current)?;
        let (mut cert, key) = tls::issue(&ca_key, &names, now)?;
        // After `tls rotate-ca`, the new CA certified by the old one follows the
        // certificate: players that still trust only the old CA reach serve too.
        let previous_key = self.previous_ca_key_path();
        if previous_key.exists() {
            let old = fs::read_to_string(&previous_key).map_err(PublisherError::io("read", &previous_key))?;
            cert.push_str(&tls::cross_certificate(&ca_key, &old)?);
        }
        tls::server_config(cert.as_bytes(), key.as_bytes())?; // refuse unusable material before it replaces anything
        write_atomically(&self.server_key_path(), key.as_bytes(), 0o600)?;
        write_atomically(&self.server_cert_path(), cert.as_bytes(), 0o644)?;
        Ok(tls::certificate_info(&cert)?.0)
    }

    /// The CA key `tls rotate-ca` replaced: while it is there, `tls renew`
    /// serves the new CA cross-certified by it. Remove it (and
    /// `ca-previous.pem`) once every box trusts the new CA.
    pub fn previous_ca_key_path(&self) -> PathBuf {
        self.root.join("tls/ca-previous.key")
    }

    /// The server certificate's expiry, read from its file.
    pub fn server_cert_expiry(&self) -> Result<DateTime<Utc>> {
        let pem = fs::read_to_string(self.server_cert_path())
            .map_err(PublisherError::io("read", self.server_cert_path()))?;
        Ok(tls::certificate_info(&pem)?.0)
    }

    /// Puts a new CA in place (`tls rotate-ca`, once the trust root lists it):
    /// the old certificate and key are kept as `ca-previous.*`; server
    /// certificates come from the new CA from the next `tls renew` on.
    pub fn install_ca(&self, ca_cert_pem: &str, ca_key_pem: &str) -> Result<()> {
        for (from, to) in [
            (self.ca_cert_path(), self.root.join("tls/ca-previous.pem")),
            (self.ca_key_path(), self.previous_ca_key_path()),
        ] {
            if from.exists() {
                fs::copy(&from, &to).map_err(PublisherError::io("copy", &from))?;
            }
        }
        write_atomically(&self.ca_key_path(), ca_key_pem.as_bytes(), 0o600)?;
        write_atomically(&self.ca_cert_path(), ca_cert_pem.as_bytes(), 0o644)
    }

    pub fn settings(&self) -> Result<Settings> {
        let path = self.settings_path();
        let text = fs::read_to_string(&path).map_err(PublisherError::io("read", &path))?;
        toml::from_str(&text).map_err(|e| PublisherError::Planning {
            path,
            reason: e.to_string(),
        })
    }

    /// The signing key; a follower's directory refuses (every path that signs
    /// a version reads it first: publish, rollback, the web UI's publish).
    pub fn secret_key(&self) -> Result<SecretKey> {
        self.refuse_if_follower()?;
        let path = self.secret_key_path();
        let text = fs::read_to_string(&path).map_err(PublisherError::io("read", &path))?;
        Ok(SecretKey::from_file_text(&text)?)
    }

    /// `ReadOnlyCopy` when this directory follows a primary (`follow`).
    pub fn refuse_if_follower(&self) -> Result<()> {
        match self.settings()?.follows {
            Some(primary) => Err(PublisherError::ReadOnlyCopy { primary }),
            None => Ok(()),
        }
    }

    pub fn public_key(&self) -> Result<PublicKey> {
        let path = self.public_key_path();
        let text = fs::read_to_string(&path).map_err(PublisherError::io("read", &path))?;
        Ok(text.trim().parse()?)
    }

    pub fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.store_path())?)
    }

    pub fn db(&self) -> Result<Db> {
        Ok(Db::open(&self.db_path())?)
    }
}

/// Creates `dir` (and missing parents) with mode 0700, and sets 0700 on `dir`.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(PublisherError::io("create", dir))?;
    set_mode(dir, 0o700)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(PublisherError::io("set the mode of", path))
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(PublisherError::io("create", path))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(PublisherError::io("write", path))
}

/// Root 1 of a new primary: `root_keys` (kept offline afterwards) with
/// `threshold`, the online key `signing` and the CA players reach `serve` through.
fn write_initial_root(
    data: &DataDir,
    root_keys: &[SecretKey],
    threshold: usize,
    signing: PublicKey,
    ca_pem: &str,
    now: DateTime<Utc>,
) -> Result<VerifiedRoot> {
    let root = Root {
        skycast_root: skycast_schema::root::ROOT_SCHEMA_V1,
        version: 1,
        published_at: whole_second(now).into(),
        root_threshold: threshold,
        root_keys: root_keys.iter().map(SecretKey::public).collect(),
        signing_keys: vec![SigningKeyEntry {
            key: signing,
            retired: None,
        }],
        tls_ca: vec![ca_pem.to_string()],
    };
    let bytes = root.to_yaml().into_bytes();
    let signers: Vec<&SecretKey> = root_keys.iter().collect();
    let sig = sign_root(&bytes, &signers).into_bytes();
    let verified = VerifiedRoot::trust_initial(&bytes, &sig)?;
    write_root_files(data, &verified)?;
    Ok(verified)
}

fn whole_second(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}

/// Writes root `root` into `roots/`: signature first, then the root, each in
/// full to a temporary file renamed into place, so a half-written root is never read.
pub(crate) fn write_root_files(data: &DataDir, root: &VerifiedRoot) -> Result<()> {
    let dir = data.roots_dir();
    create_private_dir(&dir)?;
    let v = root.version();
    write_atomically(&dir.join(RootFile::sig_name(v)), root.signature_bytes(), 0o644)?;
    write_atomically(&dir.join(RootFile::yaml_name(v)), root.bytes(), 0o644)
}

/// Writes `bytes` in full to a temporary file beside `path` and renames it there.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(PublisherError::io("create", &tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(PublisherError::io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(PublisherError::io("rename into", path))
}

/// Writes a new file (never over an existing one) only its owner can read.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, 0o644)
}
