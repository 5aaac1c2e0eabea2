//! The `players` table: shop players registered with `player add`, each known by
//! the blake3 hash of its bearer token (the token itself is never stored).

use rusqlite::{params, OptionalExtension};

use super::{token_hash, Db, DbError};

/// An enabled player, as the pull protocol knows it from its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Player {
    pub id: String,
    pub shop: String,
}

/// A registered player as pages list it: never its token hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegisteredPlayer {
    pub id: String,
    pub shop: String,
    pub disabled: bool,
    pub created_at: String,
}

impl Db {
    /// Registers player `id` of `shop` with its bearer token (stored hashed).
    /// `PlayerExists` when the id (or the token) is taken.
    pub fn add_player(&self, id: &str, shop: &str, token: &str) -> Result<(), DbError> {
        let inserted = self.write(|c| {
            c.execute(
                "INSERT INTO players (id, shop, token_hash) VALUES (?1, ?2, ?3)",
                params![id, shop, token_hash(token)],
            )
        });
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if e.is_constraint_violation() => Err(DbError::PlayerExists(id.to_string())),
            Err(e) => Err(e),
        }
    }

    /// The enabled player whose token this is.
    pub fn player_by_token(&self, token: &str) -> Result<Option<Player>, DbError> {
        let player = self.read(|c| {
            c.query_row(
                "SELECT id, shop FROM players WHERE token_hash = ?1 AND disabled = 0",
                params![token_hash(token)],
                |r| {
                    Ok(Player {
                        id: r.get(0)?,
                        shop: r.get(1)?,
                    })
                },
            )
            .optional()
        })?;
        Ok(player)
    }

    /// Every registered player, enabled or not, by shop then id.
    pub fn players(&self) -> Result<Vec<RegisteredPlayer>, DbError> {
        let players = self.read(|c| {
            c.prepare("SELECT id, shop, disabled, created_at FROM players ORDER BY shop, id")?
                .query_map([], |r| {
                    Ok(RegisteredPlayer {
                        id: r.get(0)?,
                        shop: r.get(1)?,
                        disabled: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })?
                .collect()
        })?;
        Ok(players)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;

    #[test]
    fn player_tokens_are_stored_hashed_and_ids_are_unique() {
        let (_dir, db) = open();
        db.add_player("main-1", "main", "tok-secret").unwrap();
        assert_eq!(db.player_by_token("tok-secret").unwrap().unwrap().shop, "main");
        assert!(db.player_by_token("other").unwrap().is_none());
        assert!(matches!(
            db.add_player("main-1", "main", "x"),
            Err(DbError::PlayerExists(id)) if id == "main-1"
        ));
        let stored: String = db
            .read(|c| c.query_row("SELECT token_hash FROM players", [], |r| r.get(0)))
            .unwrap();
        assert_ne!(stored, "tok-secret");
    }

    #[test]
    fn players_are_listed_by_shop_then_id() {
        let (_dir, db) = open();
        for (id, shop) in [("b-2", "bay"), ("a-1", "main"), ("b-1", "bay")] {
            db.add_player(id, shop, &format!("token-{id}")).unwrap();
        }
        let listed: Vec<(String, String)> = db
            .players()
            .unwrap()
            .into_iter()
            .map(|p| (p.shop, p.id))
            .collect();
        let want = [("bay", "b-1"), ("bay", "b-2"), ("main", "a-1")];
        assert_eq!(listed, want.map(|(s, i)| (s.to_string(), i.to_string())));
    }
}
