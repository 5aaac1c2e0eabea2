//! The publisher library's error at its edges: the typed errors of the store, the
//! database and the schema composed with the refusals the CLI and the web UI
//! give people. How each answers over HTTP lives in `http`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(crate::store::StoreError),
    /// A failure of the database file itself; its refusals become the variants
    /// below (see the `From<DbError>` impl).
    #[error(transparent)]
    Db(crate::db::DbError),
    #[error("{0}")]
    Manifest(#[from] skycast_schema::ManifestError),
    #[error("{0}")]
    Verify(#[from] skycast_schema::VerifyError),
    #[error("{0}")]
    Key(#[from] skycast_schema::KeyError),
    #[error("trust root: {0}")]
    Root(#[from] skycast_schema::RootError),
    #[error("media `{path}` is not a playable MP3: {reason}")]
    NotMp3 { path: String, reason: String },
    #[error("media `{path}` is {size_bytes} bytes, over the {max_bytes}-byte limit")]
    MediaTooLarge {
        path: String,
        size_bytes: u64,
        max_bytes: u64,
    },
    #[error("planning `{path}`: {reason}")]
    Planning { path: PathBuf, reason: String },
    #[error("`{path}` is not a Skycast data directory: run `skycast-publisher init --data {path}` first")]
    NotInitialised { path: PathBuf },
    #[error(
        "this data directory is a read-only copy of the primary at {primary} (`skycast-publisher follow`): publish, roll back and register players on the primary"
    )]
    ReadOnlyCopy { primary: String },
    #[error(
        "version {version} from the primary at {primary} is refused, this copy keeps what it has: {reason}"
    )]
    FollowRefused {
        primary: String,
        version: u64,
        reason: String,
    },
    #[error(
        "`{path}` already holds a Skycast data directory: pick another directory or keep using this one"
    )]
    AlreadyInitialised { path: PathBuf },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("version {0} does not exist: `skycast-publisher history` lists the versions")]
    NoSuchVersion(u64),
    #[error("the store has no published version yet: publish a planning first")]
    NothingPublished,
    #[error("another publish moved head to a new version while this one was prepared: run it again")]
    ConcurrentPublish,
    #[error("player `{0}` already exists: choose another id")]
    PlayerExists(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("you are signed in as {role}: this page belongs to another role")]
    Forbidden { role: &'static str },
    #[error("the form is out of date or came from another site: reload the page and try again")]
    CsrfRejected,
    #[error("too many failed sign-ins for this account or address: try again in {retry_after_secs} seconds")]
    TooManyLogins { retry_after_secs: u64 },
    #[error("{what} is busy serving another request: try again in {retry_after_secs} seconds")]
    Busy {
        what: &'static str,
        retry_after_secs: u64,
    },
    #[error("`{name}` is larger than the {max_bytes}-byte upload limit: nothing was stored")]
    UploadTooLarge { name: String, max_bytes: u64 },
    #[error(
        "missing or invalid player token: send `Authorization: Bearer <token>` as printed by `player add`"
    )]
    Unauthorized,
    /// A player's token used for another player's resource (supervision's `NotYourPlayer`).
    #[error("{0}")]
    WrongPlayer(String),
    /// A request body over its limit (supervision's `ReportTooLarge`).
    #[error("{0}")]
    BodyTooLarge(String),
    /// An enrolment code nobody issued (403).
    #[error("{0}")]
    CodeRefused(String),
    /// An enrolment code that was good once: used, expired or cancelled (410).
    #[error("{0}")]
    Gone(String),
    #[error("too many wrong enrolment codes from this address: try again in {retry_after_secs} seconds")]
    TooManyCodes { retry_after_secs: u64 },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = PublisherError> = std::result::Result<T, E>;

/// The store's own refusals keep their meaning for callers and clients: a
/// missing version is a 404, a lost compare-and-swap a 409.
impl From<crate::store::StoreError> for PublisherError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NoSuchVersion(n) => PublisherError::NoSuchVersion(n),
            StoreError::ConcurrentPublish => PublisherError::ConcurrentPublish,
            StoreError::Unverified { source, .. } => PublisherError::Verify(source),
            other => PublisherError::Store(other),
        }
    }
}

/// The database's refusals keep the variant they always had, so their message
/// and HTTP status do not change: only failures of the file stay `Db`.
impl From<crate::db::DbError> for PublisherError {
    fn from(e: crate::db::DbError) -> Self {
        use crate::db::DbError;
        match e {
            DbError::NoSuchUser(id) => PublisherError::NotFound(format!("user {id}")),
            DbError::NoSuchRequest(id) => PublisherError::NotFound(format!("publish request {id}")),
            DbError::PlayerExists(id) => PublisherError::PlayerExists(id),
            DbError::NoSuchPlayer(id) => PublisherError::NotFound(format!(
                "player `{id}`: `skycast-publisher player list` shows the registered players"
            )),
            DbError::Password(e) => e.into(),
            DbError::NoSuchEnrolment(id) => PublisherError::NotFound(format!("enrolment {id}")),
            e @ DbError::NoPendingEnrolment(_) => PublisherError::NotFound(e.to_string()),
            e @ DbError::EnrolmentPending { .. } => PublisherError::Conflict(e.to_string()),
            e @ DbError::EnrolmentCodeUnknown => PublisherError::CodeRefused(e.to_string()),
            e @ (DbError::EnrolmentCodeUsed { .. }
            | DbError::EnrolmentCodeExpired { .. }
            | DbError::EnrolmentCodeCancelled { .. }) => PublisherError::Gone(e.to_string()),
            e @ (DbError::NoSuchRole(_) | DbError::UsernameRefused(_)) => {
                PublisherError::BadRequest(e.to_string())
            }
            e @ (DbError::UserExists(_) | DbError::LastAdmin { .. }) => {
                PublisherError::Conflict(e.to_string())
            }
            e @ (DbError::Sqlite { .. } | DbError::Misuse { .. }) => PublisherError::Db(e),
        }
    }
}

/// A refused password is the person's to fix (400); a hash that cannot be made or
/// read is the publisher's (500).
impl From<crate::passwords::PasswordError> for PublisherError {
    fn from(e: crate::passwords::PasswordError) -> Self {
        use crate::passwords::PasswordError;
        match e {
            PasswordError::TooShort { .. } | PasswordError::TooLong { .. } => {
                PublisherError::BadRequest(e.to_string())
            }
            PasswordError::UnreadableHash { .. }
            | PasswordError::Check { .. }
            | PasswordError::Salt { .. }
            | PasswordError::Hash { .. } => PublisherError::Internal(e.to_string()),
        }
    }
}

impl PublisherError {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> PublisherError {
        let path = path.into();
        move |source| PublisherError::Io { action, path, source }
    }
}
