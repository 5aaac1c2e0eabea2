//! The binary's `key` and `root` commands (flags and printing only; the work is
//! in the library's `trust` module). Not part of the library.

use std::path::PathBuf;

use clap::Subcommand;
use skycast_publisher::trust;
use skycast_publisher::{publish, DataDir};
use skycast_schema::VerifiedRoot;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a new online signing key, listed by a new root signed with the root keys; the head is re-signed with it
    Rotate {
        #[arg(long)]
        data: PathBuf,
        /// A root key file (repeatable): as many as the root's threshold
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        #[arg(long, env = "USER", default_value = "publisher")]
        author: String,
    },
    /// Revoke a (stolen) signing key: what it signed after --after is refused by every player
    Revoke {
        #[arg(long)]
        data: PathBuf,
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        /// The key id (16 hex characters, as `root show` and refusals print it)
        #[arg(long)]
        key: String,
        /// The instant from which nothing it signed counts (RFC 3339), e.g. when the laptop was lost
        #[arg(long, value_parser = parse_instant)]
        after: chrono::DateTime<chrono::Utc>,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, env = "USER", default_value = "publisher")]
        author: String,
    },
    /// Write a new secret key file (0600), e.g. a root key for `root rotate`; prints its public key
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum RootCommand {
    /// Replace the root keys: signed by a threshold of the old keys and of the new ones
    Rotate {
        #[arg(long)]
        data: PathBuf,
        /// An old root key file (repeatable): as many as the current threshold
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        /// A new root key file (repeatable; `key generate` makes them)
        #[arg(long = "new-root-key", required = true)]
        new_root_keys: Vec<PathBuf>,
        /// How many of the new root keys must sign the next change
        #[arg(long)]
        threshold: usize,
        #[arg(long, env = "USER", default_value = "publisher")]
        author: String,
    },
    /// Print the newest root: root keys and threshold, signing keys and their state
    Show {
        #[arg(long)]
        data: PathBuf,
    },
}

fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    s.parse::<skycast_schema::Instant>().map(|i| i.0)
}

/// Prints the new root and re-signs the head, so the version players take next carries it.
fn commit_changed(
    dir: &DataDir,
    what: &str,
    root: &VerifiedRoot,
    author: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    println!("{what}: root {} written", root.version());
    print!("{}", trust::describe(root));
    if dir.store()?.head()?.is_none() {
        println!(
            "nothing published yet: the first version will carry root {}",
            root.version()
        );
        return Ok(());
    }
    let r = publish::resign(dir, author, now)?;
    println!(
        "published version {} with the content of version {}, signed with the key in service",
        r.published.version, r.of_version
    );
    Ok(())
}

pub fn key(command: KeyCommand, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    match command {
        KeyCommand::Rotate {
            data,
            root_keys,
            author,
        } => {
            let dir = DataDir::open(&data)?;
            let keys = trust::read_secret_keys(&root_keys)?;
            let root = trust::key_rotate(&dir, &keys, now)?;
            commit_changed(&dir, "signing key rotated", &root, &author, now)?;
        }
        KeyCommand::Revoke {
            data,
            root_keys,
            key,
            after,
            reason,
            author,
        } => {
            let dir = DataDir::open(&data)?;
            let keys = trust::read_secret_keys(&root_keys)?;
            let id = key.parse().map_err(anyhow::Error::msg)?;
            let root = trust::key_revoke(&dir, &keys, id, after, &reason, now)?;
            commit_changed(&dir, &format!("key {key} revoked"), &root, &author, now)?;
        }
        KeyCommand::Generate { out } => {
            let key = trust::generate_key_file(&out)?;
            println!("{} {}", key.public().id(), key.public());
        }
    }
    Ok(())
}

pub fn root(command: RootCommand, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    match command {
        RootCommand::Rotate {
            data,
            root_keys,
            new_root_keys,
            threshold,
            author,
        } => {
            let dir = DataDir::open(&data)?;
            let old = trust::read_secret_keys(&root_keys)?;
            let new = trust::read_secret_keys(&new_root_keys)?;
            let root = trust::root_rotate(&dir, &old, &new, threshold, now)?;
            commit_changed(&dir, "root keys rotated", &root, &author, now)?;
        }
        RootCommand::Show { data } => {
            let dir = DataDir::open(&data)?;
            match trust::local_chain(&dir)? {
                Some(root) => print!("{}", trust::describe(&root)),
                None => println!("no trust root: this directory pins its one signing key"),
            }
        }
    }
    Ok(())
}

/// `tls rotate-ca`: a new CA, listed by the next root beside the old one; the
/// files are put in place once the root is written, and the head is re-signed
/// so players learn the root (and trust the new CA) at their next sync.
pub fn rotate_ca(
    dir: &DataDir,
    root_keys: &[PathBuf],
    author: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let keys = trust::read_secret_keys(root_keys)?;
    let (cert, key) = skycast_publisher::tls::new_ca()?;
    let root = trust::add_tls_ca(dir, &keys, &cert, now)?;
    dir.install_ca(&cert, &key)?;
    commit_changed(dir, "new CA listed", &root, author, now)?;
    println!(
        "when the fleet is on root {} (`fleet` shows every player in sync), run `skycast-publisher tls renew` to serve a certificate from the new CA",
        root.version()
    );
    Ok(())
}
