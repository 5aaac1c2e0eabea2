//! The `users` table: people who sign in to the web UI, with one role each and an
//! argon2id password hash. An enabled admin always remains.

use rusqlite::{params, OptionalExtension, Row};

use super::{Db, DbError};
use crate::passwords::{hash_password, password_matches, PasswordHash};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Marketing,
    Commercial,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketing => "marketing",
            Role::Commercial => "commercial",
            Role::Auditor => "auditor",
        }
    }

    pub const ALL: [Role; 4] = [Role::Admin, Role::Marketing, Role::Commercial, Role::Auditor];

    pub fn parse(text: &str) -> Result<Role, DbError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| DbError::NoSuchRole(text.to_string()))
    }
}

/// A person who signs in to the web UI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
}

/// The columns [`user_from_row`] reads, in order.
pub(super) const USER_COLUMNS: &str = "id, username, role, disabled, created_at";

/// A user from [`USER_COLUMNS`] starting at column `first`.
pub(super) fn user_from_row(r: &Row<'_>, first: usize) -> rusqlite::Result<User> {
    let role: String = r.get(first + 2)?;
    Ok(User {
        id: r.get(first)?,
        username: r.get(first + 1)?,
        // The CHECK constraint on `users.role` keeps it one of the four.
        role: Role::parse(&role).unwrap_or(Role::Auditor),
        disabled: r.get(first + 3)?,
        created_at: r.get(first + 4)?,
    })
}

/// User names appear in pages, commit authors and logs: letters, digits and `.-_@`.
pub fn check_username(name: &str) -> Result<(), DbError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(DbError::UsernameRefused(name.to_string()))
    }
}

impl Db {
    /// Adds an enabled user; returns its id. `UserExists` when the name is taken.
    pub fn create_user(&self, username: &str, password: &str, role: Role) -> Result<i64, DbError> {
        check_username(username)?;
        let hash = hash_password(username, password)?;
        let inserted = self.write(|c| {
            c.execute(
                "INSERT INTO users (username, password_hash, role) VALUES (?1, ?2, ?3)",
                params![username, hash.as_str(), role.as_str()],
            )?;
            Ok(c.last_insert_rowid())
        });
        match inserted {
            Ok(id) => Ok(id),
            Err(e) if e.is_constraint_violation() => Err(DbError::UserExists(username.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>, DbError> {
        let users = self.read(|c| {
            c.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"))?
                .query_map([], |r| user_from_row(r, 0))?
                .collect()
        })?;
        Ok(users)
    }

    /// The user with this id; `NoSuchUser` when there is none.
    pub fn user(&self, id: i64) -> Result<User, DbError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                params![id],
                |r| user_from_row(r, 0),
            )
            .optional()
        })?
        .ok_or(DbError::NoSuchUser(id))
    }

    /// Changes a user's role and whether they may sign in. Refuses to leave the
    /// publisher without an enabled admin. Disabling ends the user's sessions.
    pub fn update_user(&self, id: i64, role: Role, disabled: bool) -> Result<(), DbError> {
        self.transaction(|tx| {
            let user = tx.user(id)?;
            if user.role == Role::Admin && !user.disabled && (role != Role::Admin || disabled) {
                tx.check_not_last_admin(&user)?;
            }
            tx.write(|c| {
                c.execute(
                    "UPDATE users SET role = ?2, disabled = ?3 WHERE id = ?1",
                    params![id, role.as_str(), disabled],
                )?;
                if disabled {
                    c.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
                }
                Ok(())
            })?;
            Ok(())
        })
    }

    /// Sets a new password (8 to 200 characters) and ends the user's sessions.
    pub fn set_password(&self, id: i64, password: &str) -> Result<(), DbError> {
        let user = self.user(id)?;
        let hash = hash_password(&user.username, password)?;
        self.set_password_hash(id, &hash)
    }

    /// Stores a password hashed beforehand (hashing is slow: do it before a
    /// transaction) and ends the user's sessions.
    pub fn set_password_hash(&self, id: i64, hash: &PasswordHash) -> Result<(), DbError> {
        let changed = self.transaction(|tx| {
            tx.write(|c| {
                let changed = c.execute(
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![id, hash.as_str()],
                )?;
                c.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
                Ok(changed)
            })
        })?;
        if changed == 0 {
            return Err(DbError::NoSuchUser(id));
        }
        Ok(())
    }

    /// Removes a user (and their sessions). Refuses to remove the last enabled admin.
    pub fn delete_user(&self, id: i64) -> Result<(), DbError> {
        self.transaction(|tx| {
            let user = tx.user(id)?;
            if user.role == Role::Admin && !user.disabled {
                tx.check_not_last_admin(&user)?;
            }
            tx.write(|c| c.execute("DELETE FROM users WHERE id = ?1", params![id]))?;
            Ok(())
        })
    }

    fn check_not_last_admin(&self, user: &User) -> Result<(), DbError> {
        let admins: i64 = self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
                [],
                |r| r.get(0),
            )
        })?;
        if admins <= 1 {
            return Err(DbError::LastAdmin {
                username: user.username.clone(),
            });
        }
        Ok(())
    }

    /// True when the user exists, is enabled and the password matches.
    pub fn check_password(&self, username: &str, password: &str) -> Result<bool, DbError> {
        Ok(self.authenticate(username, password)?.is_some())
    }

    /// The enabled user with this name and password. An unknown name costs the same
    /// argon2 work as a wrong password, so timing does not tell which names exist.
    /// The hash is checked with no connection held.
    pub fn authenticate(&self, username: &str, password: &str) -> Result<Option<User>, DbError> {
        let stored = self.password_record(username)?;
        match stored {
            Some((id, hash)) if password_matches(Some(&hash), password)? => Ok(Some(self.user(id)?)),
            Some(_) => Ok(None),
            None => {
                password_matches(None, password)?;
                Ok(None)
            }
        }
    }

    /// The id and password hash of an enabled user, for checking a password
    /// without holding the database (argon2 takes tens of milliseconds).
    pub fn password_record(&self, username: &str) -> Result<Option<(i64, String)>, DbError> {
        let record = self.read(|c| {
            c.query_row(
                "SELECT id, password_hash FROM users WHERE username = ?1 AND disabled = 0",
                params![username],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;
    use crate::passwords::PasswordError;

    #[test]
    fn passwords_are_checked_against_argon2_hashes() {
        let (_dir, db) = open();
        db.create_user("alice", "correct horse", Role::Admin).unwrap();
        assert!(db.check_password("alice", "correct horse").unwrap());
        assert!(!db.check_password("alice", "wrong horse").unwrap());
        assert!(!db.check_password("bob", "correct horse").unwrap());
        let stored: String = db
            .read(|c| c.query_row("SELECT password_hash FROM users", [], |r| r.get(0)))
            .unwrap();
        assert!(stored.starts_with("$argon2id$") && !stored.contains("correct"));
    }

    #[test]
    fn names_are_unique_and_the_last_enabled_admin_stays() {
        let (_dir, db) = open();
        let root = db.create_user("root", "long enough", Role::Admin).unwrap();
        assert!(matches!(
            db.create_user("root", "long enough", Role::Auditor),
            Err(DbError::UserExists(name)) if name == "root"
        ));
        assert!(matches!(
            db.create_user("no spaces", "long enough", Role::Auditor),
            Err(DbError::UsernameRefused(_))
        ));
        for refused in [
            db.update_user(root, Role::Marketing, false),
            db.update_user(root, Role::Admin, true),
            db.delete_user(root),
        ] {
            assert!(
                matches!(&refused, Err(DbError::LastAdmin { username }) if username == "root"),
                "{refused:?}"
            );
        }
        assert_eq!(db.user(root).unwrap().role, Role::Admin);
        let second = db.create_user("second", "long enough", Role::Admin).unwrap();
        db.update_user(root, Role::Auditor, true).unwrap();
        let after = db.user(root).unwrap();
        assert_eq!((after.role, after.disabled), (Role::Auditor, true));
        assert!(
            db.password_record("root").unwrap().is_none(),
            "disabled users do not sign in"
        );
        db.delete_user(root).unwrap();
        assert_eq!(
            db.users().unwrap().iter().map(|u| u.id).collect::<Vec<_>>(),
            [second]
        );
        assert!(matches!(db.user(root), Err(DbError::NoSuchUser(id)) if id == root));
    }

    #[test]
    fn a_new_password_replaces_the_old_one() {
        let (_dir, db) = open();
        let id = db.create_user("mia", "first password", Role::Marketing).unwrap();
        db.set_password(id, "second password").unwrap();
        assert!(!db.check_password("mia", "first password").unwrap());
        assert!(db.check_password("mia", "second password").unwrap());
        assert!(matches!(
            db.set_password(id, "short"),
            Err(DbError::Password(PasswordError::TooShort { .. }))
        ));
        let hash = hash_password("ghost", "long enough").unwrap();
        assert!(matches!(
            db.set_password_hash(99, &hash),
            Err(DbError::NoSuchUser(99))
        ));
    }
}
