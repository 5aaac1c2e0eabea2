//! Passwords of people who sign in: argon2id hashes with a random salt, length
//! rules, and a check that costs the same whether or not the user exists.
//! No SQL here: `db::users` stores what [`hash_password`] returns. Its own error,
//! [`PasswordError`], names neither the database nor the publisher's error, so
//! `db` may use this module without a circle.

use argon2::password_hash::{Output, PasswordHash as Argon2Hash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Why a password was refused, or could not be hashed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password for `{username}` is too short: use at least 8 characters")]
    TooShort { username: String },
    #[error("password for `{username}` is too long: use at most 200 characters")]
    TooLong { username: String },
    /// A stored hash is not PHC text: the users table was changed by hand.
    #[error("a stored password hash cannot be read: {reason}")]
    UnreadableHash { reason: String },
    #[error("cannot check a password against its stored hash: {reason}")]
    Check { reason: String },
    #[error("cannot make a password salt: {reason}")]
    Salt { reason: String },
    #[error("cannot hash the password of `{username}`: {reason}")]
    Hash { username: String, reason: String },
}

/// An argon2id hash of a random password nobody knows, checked when a user name
/// does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2t5Y2FzdGR1bW15c2FsdA$3YcQeG4eUmDUF6RShEbOx2SLpnhfvZXH3EZpMu/0fUo";

/// A password's argon2id hash in PHC text (`$argon2id$...`): what the users table
/// keeps. Only [`hash_password`] makes one, so plain text never reaches the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `password` against an argon2id hash; without a hash (no such user) it
/// checks against a dummy one, so both cases cost the same time.
pub fn password_matches(hash: Option<&str>, password: &str) -> Result<bool, PasswordError> {
    PasswordChecker::default().matches(hash, password)
}

/// Checks passwords with one argon2 memory it keeps (~19 MiB): a thread that
/// checks many passwords reuses it instead of allocating one per check, which
/// the allocator would keep per thread (measured: +19 MiB per check up to seven).
#[derive(Default)]
pub struct PasswordChecker {
    memory: Vec<Block>,
}

impl PasswordChecker {
    /// [`password_matches`], in this checker's memory.
    pub fn matches(&mut self, hash: Option<&str>, password: &str) -> Result<bool, PasswordError> {
        let unreadable = |e: &dyn std::fmt::Display| PasswordError::UnreadableHash {
            reason: e.to_string(),
        };
        let parsed = Argon2Hash::new(hash.unwrap_or(DUMMY_HASH)).map_err(|e| unreadable(&e))?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| unreadable(&e))?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| unreadable(&e))?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(|e| unreadable(&e))?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(unreadable(&"it has no salt or no hash"));
        };
        let mut salt_bytes = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes).map_err(|e| unreadable(&e))?;
        let blocks = params.block_count();
        if self.memory.len() != blocks {
            self.memory = vec![Block::default(); blocks];
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut self.memory[..])
            .map_err(|e| PasswordError::Check {
                reason: e.to_string(),
            })?;
        // `Output` compares in constant time.
        let matches = Output::new(&out).is_ok_and(|out| out == expected);
        Ok(matches && hash.is_some())
    }
}

/// Hashes `password` for `username` after checking its length (8 to 200
/// characters). Slow on purpose (tens of milliseconds): callers hash before they
/// open a database transaction.
pub fn hash_password(username: &str, password: &str) -> Result<PasswordHash, PasswordError> {
    let length = password.chars().count();
    if length < 8 {
        return Err(PasswordError::TooShort {
            username: username.to_string(),
        });
    }
    if length > 200 {
        return Err(PasswordError::TooLong {
            username: username.to_string(),
        });
    }
    let salt = SaltString::encode_b64(&crate::random_bytes::<16>()).map_err(|e| PasswordError::Salt {
        reason: e.to_string(),
    })?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hash {
            username: username.to_string(),
            reason: e.to_string(),
        })?;
    Ok(PasswordHash(hash.to_string()))
}

/// Argon2 checks that may run at once: about the number of cores. Each takes a
/// core and ~19 MiB, so a burst of sign-ins queues instead of allocating.
pub fn password_checks_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8))
}

/// One password to check, and where its answer goes.
struct PasswordJob {
    hash: Option<String>,
    password: String,
    answer: tokio::sync::oneshot::Sender<Result<bool, PasswordError>>,
}

/// A bounded pool of password checks: [`password_checks_at_once`] threads of
/// their own take jobs from one queue. Dedicated threads (rather than tokio's up
/// to 512 blocking ones) also bound what the allocator keeps: each thread reuses
/// its own 19 MiB. The threads end when the pool is dropped.
pub struct PasswordPool {
    queue: std::sync::Mutex<std::sync::mpsc::Sender<PasswordJob>>,
}

impl PasswordPool {
    /// Starts the pool's threads.
    pub fn start() -> Result<PasswordPool, PasswordError> {
        let (send, receive) = std::sync::mpsc::channel::<PasswordJob>();
        let receive = std::sync::Arc::new(std::sync::Mutex::new(receive));
        for i in 0..password_checks_at_once() {
            let receive = receive.clone();
            std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || {
                    let mut checker = PasswordChecker::default();
                    loop {
                        let job = match receive.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panic loses this answer (the request fails), not the thread.
                        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            checker.matches(job.hash.as_deref(), &job.password)
                        }));
                        if let Ok(matches) = checked {
                            // The client may have hung up: nobody waits for the answer then.
                            let _ = job.answer.send(matches);
                        }
                    }
                })
                .map_err(|e| PasswordError::Check {
                    reason: format!("cannot start a password check thread: {e}"),
                })?;
        }
        Ok(PasswordPool {
            queue: std::sync::Mutex::new(send),
        })
    }

    /// Checks `password` against `hash` (none: a dummy of the same cost): at most
    /// [`password_checks_at_once`] at a time, the others queue. Waiting holds no
    /// thread and no database connection.
    pub async fn check(&self, hash: Option<String>, password: String) -> Result<bool, PasswordError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let stopped = || PasswordError::Check {
            reason: "no password check thread is running: restart the publisher".into(),
        };
        let queue = self.queue.lock().map_err(|_| stopped())?.clone();
        queue
            .send(PasswordJob {
                hash,
                password,
                answer,
            })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| PasswordError::Check {
            reason: "a password check stopped: the publisher logged why".into(),
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only() {
        let hash = hash_password("alice", "correct horse").unwrap();
        assert!(hash.as_str().starts_with("$argon2id$") && !hash.as_str().contains("correct"));
        assert!(password_matches(Some(hash.as_str()), "correct horse").unwrap());
        assert!(!password_matches(Some(hash.as_str()), "wrong horse").unwrap());
        assert!(!password_matches(None, "correct horse").unwrap());
    }

    #[test]
    fn a_reused_checker_gives_the_same_answers() {
        let hash = hash_password("alice", "correct horse").unwrap();
        let mut checker = PasswordChecker::default();
        for _ in 0..2 {
            assert!(checker.matches(Some(hash.as_str()), "correct horse").unwrap());
            assert!(!checker.matches(Some(hash.as_str()), "wrong horse").unwrap());
            assert!(!checker.matches(None, "correct horse").unwrap());
        }
        assert!(matches!(
            checker.matches(Some("not a hash"), "x"),
            Err(PasswordError::UnreadableHash { .. })
        ));
    }

    #[test]
    fn passwords_outside_8_to_200_characters_are_refused_with_the_rule() {
        let long = "x".repeat(201);
        let err = hash_password("alice", "short").unwrap_err();
        assert!(matches!(&err, PasswordError::TooShort { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "password for `alice` is too short: use at least 8 characters"
        );
        let err = hash_password("alice", &long).unwrap_err();
        assert!(matches!(&err, PasswordError::TooLong { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "password for `alice` is too long: use at most 200 characters"
        );
    }
}
