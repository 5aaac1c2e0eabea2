//! The `players` table: shop players registered with `player add`, each known by
//! the blake3 hash of its bearer token (the token itself is never stored), and
//! `player_events`, who disabled, enabled, re-keyed, removed or enrolled one
//! (`enrolments.rs` records that), how and when.
//! Every change of `players` also bumps `player_generation` (by trigger), which
//! `serve` polls to re-check the tokens of waiting long-polls, and replaces the
//! signal file `players.changed` so that `serve` reloads its in-memory tokens
//! before its next request.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{timestamp, token_hash, Db, DbError};

/// An enabled player, as the pull protocol knows it from its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Player {
    pub id: String,
    pub shop: String,
}

/// A registered player as pages list it: never its token hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredPlayer {
    pub id: String,
    pub shop: String,
    pub disabled: bool,
    pub created_at: String,
    /// The last change someone made since it was registered, if any.
    pub last_change: Option<PlayerEvent>,
}

/// What someone did to a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayerAction {
    Disabled,
    Enabled,
    TokenRotated,
    Removed,
    /// Registered by redeeming a one-time code; `by` is who made the code.
    Enrolled,
}

impl PlayerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlayerAction::Disabled => "disabled",
            PlayerAction::Enabled => "enabled",
            PlayerAction::TokenRotated => "token_rotated",
            PlayerAction::Removed => "removed",
            PlayerAction::Enrolled => "enrolled",
        }
    }

    fn parse(text: &str) -> Option<PlayerAction> {
        [
            PlayerAction::Disabled,
            PlayerAction::Enabled,
            PlayerAction::TokenRotated,
            PlayerAction::Removed,
            PlayerAction::Enrolled,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }
}

/// Through what a change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Cli,
    Web,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Web => "web",
        }
    }
}

/// One recorded change of a player: what, by whom, through what, when (RFC 3339 UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlayerEvent {
    pub player_id: String,
    pub action: PlayerAction,
    pub by: String,
    pub via: Via,
    pub at: String,
}

/// Who makes a change, for the record.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub via: Via,
    pub at: DateTime<Utc>,
}

/// Reads an event from `action, by_name, via, at, player_id` starting at column `at`;
/// `None` when the columns are NULL (no event) or name something unknown.
fn event_at(r: &Row<'_>, first: usize) -> rusqlite::Result<Option<PlayerEvent>> {
    let action: Option<String> = r.get(first)?;
    let Some(action) = action.as_deref().and_then(PlayerAction::parse) else {
        return Ok(None);
    };
    let via: String = r.get(first + 2)?;
    Ok(Some(PlayerEvent {
        player_id: r.get(first + 4)?,
        action,
        by: r.get(first + 1)?,
        via: if via == "web" { Via::Web } else { Via::Cli },
        at: r.get(first + 3)?,
    }))
}

const EVENT_COLUMNS: &str = "e.action, e.by_name, e.via, e.at, e.player_id";

/// The latest event of each player: the one with the highest id. A `removed` one
/// means the player was registered again afterwards with nothing changed since.
const PLAYER_ROWS: &str =
    "SELECT p.id, p.shop, p.disabled, p.created_at, e.action, e.by_name, e.via, e.at, e.player_id
     FROM players p
     LEFT JOIN player_events e
       ON e.id = (SELECT MAX(id) FROM player_events WHERE player_id = p.id)
          AND e.action != 'removed'";

fn registered(r: &Row<'_>) -> rusqlite::Result<RegisteredPlayer> {
    Ok(RegisteredPlayer {
        id: r.get(0)?,
        shop: r.get(1)?,
        disabled: r.get(2)?,
        created_at: r.get(3)?,
        last_change: event_at(r, 4)?,
    })
}

pub(super) fn record(
    c: &rusqlite::Connection,
    id: &str,
    action: PlayerAction,
    who: Actor<'_>,
) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO player_events (player_id, action, by_name, via, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, action.as_str(), who.name, who.via.as_str(), timestamp(who.at)],
    )
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
            Ok(_) => {
                self.signal_players_changed();
                Ok(())
            }
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

    /// Every registered player, enabled or not, by shop then id, with its last change.
    pub fn players(&self) -> Result<Vec<RegisteredPlayer>, DbError> {
        let players = self.read(|c| {
            c.prepare(&format!("{PLAYER_ROWS} ORDER BY p.shop, p.id"))?
                .query_map([], registered)?
                .collect()
        })?;
        Ok(players)
    }

    /// Registered player `id`; `NoSuchPlayer` if there is none.
    pub fn player(&self, id: &str) -> Result<RegisteredPlayer, DbError> {
        self.read(|c| {
            c.query_row(&format!("{PLAYER_ROWS} WHERE p.id = ?1"), params![id], registered)
                .optional()
        })?
        .ok_or_else(|| DbError::NoSuchPlayer(id.to_string()))
    }

    /// Disables (its token gets 401 from then on) or enables (its token works
    /// again) player `id`, recording who did it. `false` when it already was in
    /// that state: nothing changes and nothing is recorded.
    pub fn set_player_disabled(&self, id: &str, disabled: bool, who: Actor<'_>) -> Result<bool, DbError> {
        let action = if disabled {
            PlayerAction::Disabled
        } else {
            PlayerAction::Enabled
        };
        self.transaction(|tx| {
            if tx.player(id)?.disabled == disabled {
                return Ok(false);
            }
            tx.write(|c| {
                c.execute(
                    "UPDATE players SET disabled = ?2 WHERE id = ?1",
                    params![id, disabled],
                )?;
                record(c, id, action, who)
            })?;
            Ok(true)
        })
        .inspect(|changed| {
            if *changed {
                self.signal_players_changed();
            }
        })
    }

    /// Replaces player `id`'s token with `token` (the old one gets 401 from then
    /// on), recording who did it. A disabled player stays disabled.
    pub fn rotate_player_token(
        &self,
        id: &str,
        token: &str,
        who: Actor<'_>,
    ) -> Result<RegisteredPlayer, DbError> {
        self.transaction(|tx| {
            let player = tx.player(id)?;
            tx.write(|c| {
                c.execute(
                    "UPDATE players SET token_hash = ?2 WHERE id = ?1",
                    params![id, token_hash(token)],
                )?;
                record(c, id, PlayerAction::TokenRotated, who)
            })?;
            Ok(player)
        })
        .inspect(|_| self.signal_players_changed())
    }

    /// Forgets player `id` (its token gets 401 from then on; the id may be
    /// registered again), recording who did it. Returns what it was.
    pub fn remove_player(&self, id: &str, who: Actor<'_>) -> Result<RegisteredPlayer, DbError> {
        self.transaction(|tx| {
            let player = tx.player(id)?;
            tx.write(|c| {
                c.execute("DELETE FROM players WHERE id = ?1", params![id])?;
                record(c, id, PlayerAction::Removed, who)
            })?;
            Ok(player)
        })
        .inspect(|_| self.signal_players_changed())
    }

    /// The latest `limit` changes of any player (removed ones too), newest first.
    pub fn player_events(&self, limit: u32) -> Result<Vec<PlayerEvent>, DbError> {
        let events: Vec<Option<PlayerEvent>> = self.read(|c| {
            c.prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM player_events e ORDER BY e.id DESC LIMIT ?1"
            ))?
            .query_map(params![limit], |r| event_at(r, 0))?
            .collect()
        })?;
        Ok(events.into_iter().flatten().collect())
    }

    /// The generation and every enabled player by token hash (hex): what `serve`
    /// keeps in memory to admit requests without a query each. Read in one
    /// transaction, so the generation is the one of the rows.
    pub fn enabled_players_by_token_hash(&self) -> Result<(u64, Vec<(String, Player)>), DbError> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let n: i64 = tx.query_row("SELECT n FROM player_generation WHERE id = 1", [], |r| r.get(0))?;
            let rows = tx
                .prepare("SELECT token_hash, id, shop FROM players WHERE disabled = 0")?
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Player {
                            id: r.get(1)?,
                            shop: r.get(2)?,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((n.unsigned_abs(), rows))
        })
    }

    /// Makes the enabled players exactly `rows` (token hash, player), as a
    /// follower copies them from its primary: others are removed, changed ones
    /// updated, in one transaction. Returns whether anything changed.
    pub fn replace_players(&self, rows: &[(String, Player)]) -> Result<bool, DbError> {
        let (_, current) = self.enabled_players_by_token_hash()?;
        let mut current = current;
        current.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        let mut wanted = rows.to_vec();
        wanted.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        if current == wanted {
            return Ok(false);
        }
        self.transaction(|tx| {
            tx.write(|c| {
                c.execute("DELETE FROM players", [])?;
                for (hash, player) in &wanted {
                    c.execute(
                        "INSERT INTO players (id, shop, token_hash) VALUES (?1, ?2, ?3)",
                        params![player.id, player.shop, hash],
                    )?;
                }
                Ok(())
            })
        })?;
        self.signal_players_changed();
        Ok(true)
    }

    /// The file whose replacement tells a running `serve` that the players
    /// changed (see [`crate::stamp`]): it then reloads its tokens before its
    /// next request, instead of looking each one up here.
    pub fn players_signal_path(&self) -> PathBuf {
        self.path.with_file_name("players.changed")
    }

    /// Replaces the signal file after a change of the players, unless inside a
    /// transaction (whose caller signals after its commit). A failure only
    /// delays the change until `serve`'s next poll of the generation.
    pub(super) fn signal_players_changed(&self) {
        if self.in_transaction() {
            return;
        }
        let path = self.players_signal_path();
        let generation = self
            .player_generation()
            .map(|g| g.to_string())
            .unwrap_or_default();
        if let Err(e) = crate::stamp::touch(&path, &generation) {
            tracing::warn!(path = %path.display(), error = %e, "cannot signal a change of the players");
        }
    }

    /// A number that changes whenever any process adds, changes or removes a
    /// player: one indexed read, cheap enough to poll.
    pub fn player_generation(&self) -> Result<u64, DbError> {
        let n: i64 =
            self.read(|c| c.query_row("SELECT n FROM player_generation WHERE id = 1", [], |r| r.get(0)))?;
        Ok(n.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;

    fn cli(name: &str) -> Actor<'_> {
        Actor {
            name,
            via: Via::Cli,
            at: DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

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

    #[test]
    fn disabling_refuses_the_token_until_enabled_and_each_change_is_recorded_once() {
        let (_dir, db) = open();
        db.add_player("main-1", "main", "tok").unwrap();
        assert!(db.set_player_disabled("main-1", true, cli("ann")).unwrap());
        assert!(db.player_by_token("tok").unwrap().is_none());
        assert!(!db.set_player_disabled("main-1", true, cli("bob")).unwrap());
        let last = db.player("main-1").unwrap().last_change.unwrap();
        assert_eq!((last.action, last.by.as_str()), (PlayerAction::Disabled, "ann"));
        assert_eq!(last.at, "2026-03-01T10:00:00Z");
        assert!(db.set_player_disabled("main-1", false, cli("bob")).unwrap());
        assert_eq!(db.player_by_token("tok").unwrap().unwrap().id, "main-1");
        let actions: Vec<_> = db
            .player_events(10)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, [PlayerAction::Enabled, PlayerAction::Disabled]);
    }

    #[test]
    fn rotating_replaces_the_token_and_keeps_a_disabled_player_disabled() {
        let (_dir, db) = open();
        db.add_player("main-1", "main", "old").unwrap();
        db.rotate_player_token("main-1", "new", cli("ann")).unwrap();
        assert!(db.player_by_token("old").unwrap().is_none());
        assert!(db.player_by_token("new").unwrap().is_some());
        db.set_player_disabled("main-1", true, cli("ann")).unwrap();
        db.rotate_player_token("main-1", "newer", cli("ann")).unwrap();
        assert!(db.player_by_token("newer").unwrap().is_none());
        assert!(db.player("main-1").unwrap().disabled);
    }

    #[test]
    fn removing_forgets_the_player_but_keeps_its_history() {
        let (_dir, db) = open();
        db.add_player("main-1", "main", "tok").unwrap();
        db.set_player_disabled("main-1", true, cli("ann")).unwrap();
        db.remove_player("main-1", cli("bob")).unwrap();
        assert!(db.players().unwrap().is_empty());
        assert!(matches!(db.player("main-1"), Err(DbError::NoSuchPlayer(id)) if id == "main-1"));
        assert_eq!(db.player_events(10).unwrap()[0].action, PlayerAction::Removed);
        // Registered again: the old player's changes are not the new one's.
        db.add_player("main-1", "main", "tok2").unwrap();
        assert_eq!(db.player("main-1").unwrap().last_change, None);
    }

    #[test]
    fn unknown_players_are_refused_by_name() {
        let (_dir, db) = open();
        let refusals = [
            db.set_player_disabled("ghost", true, cli("ann")).unwrap_err(),
            db.rotate_player_token("ghost", "t", cli("ann")).unwrap_err(),
            db.remove_player("ghost", cli("ann")).unwrap_err(),
        ];
        for e in refusals {
            assert!(matches!(&e, DbError::NoSuchPlayer(id) if id == "ghost"), "{e}");
        }
        assert!(db.player_events(10).unwrap().is_empty());
    }

    #[test]
    fn the_generation_moves_on_every_change_of_the_players() {
        let (_dir, db) = open();
        let mut seen = vec![db.player_generation().unwrap()];
        db.add_player("main-1", "main", "tok").unwrap();
        seen.push(db.player_generation().unwrap());
        db.set_player_disabled("main-1", true, cli("ann")).unwrap();
        seen.push(db.player_generation().unwrap());
        db.rotate_player_token("main-1", "t2", cli("ann")).unwrap();
        seen.push(db.player_generation().unwrap());
        db.remove_player("main-1", cli("ann")).unwrap();
        seen.push(db.player_generation().unwrap());
        let mut distinct = seen.clone();
        distinct.dedup();
        assert_eq!(distinct, seen, "{seen:?}");
    }
}
