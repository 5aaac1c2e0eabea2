//! Cutting off a token that was let in: every request names the player-set
//! generation it was admitted under, and a long-poll waiting in `head` re-checks
//! its token whenever that generation moves, so a player disabled, re-keyed or
//! removed (by the web UI in this process or the CLI in another) gets 401 within
//! one poll tick instead of its answer.
//!
//! Tokens are admitted from an in-memory [`TokenSet`] (enabled players by token
//! hash), reloaded whole when it changes: at once when a writer replaced the
//! players' signal file (every `Db` change of a player does, from the CLI or the
//! web UI: a `stat` per request notices it), and on the generation poll as a
//! fallback. The generation is `players`' change counter in the database (bumped
//! by trigger on every write), read once per tick by
//! [`ProtocolState::follow_players`] for the whole server; a waiting long-poll
//! re-checks its token in memory only when it moved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::{blocking, ProtocolState};
use crate::db::Player;
use crate::error::{PublisherError, Result};

/// The token a request was let in with, and the player-set generation it was
/// checked against. No `Debug`: the token is a secret and is never logged.
#[derive(Clone)]
pub(super) struct Admitted {
    token: String,
    generation: u64,
    /// The player the token belonged to when it was let in.
    player: Player,
}

impl Admitted {
    pub(super) fn new(token: String, generation: u64, player: Player) -> Admitted {
        Admitted {
            token,
            generation,
            player,
        }
    }

    pub(super) fn player(&self) -> &Player {
        &self.player
    }
}

/// The 401 for a missing, unknown or cut-off token. The connection is closed
/// after it: a client holding a revoked token keeps nothing open.
pub(super) fn refused() -> Response {
    let mut resp = PublisherError::Unauthorized.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Every enabled player by the blake3 hash of its token, and the generation of
/// the players' table it was read at.
pub(crate) struct TokenSet {
    pub(super) generation: u64,
    by_hash: HashMap<blake3::Hash, Player>,
}

impl TokenSet {
    pub(super) fn load(db: &crate::db::Db) -> Result<TokenSet> {
        let (generation, rows) = db.enabled_players_by_token_hash()?;
        let by_hash = rows
            .into_iter()
            .filter_map(|(hash, player)| match blake3::Hash::from_hex(&hash) {
                Ok(hash) => Some((hash, player)),
                Err(_) => {
                    tracing::warn!(player = %player.id, "a token hash in the database is not blake3 hex: player ignored");
                    None
                }
            })
            .collect();
        Ok(TokenSet { generation, by_hash })
    }

    fn player(&self, token: &str) -> Option<&Player> {
        self.by_hash.get(&blake3::hash(token.as_bytes()))
    }

    /// Commits this set for the followers of this primary (`follow` on a
    /// second site fetches it with the store); a follower itself does not.
    /// A failure is logged: followers keep the players they had.
    pub(super) fn share_with_followers(&self, data: &crate::data_dir::DataDir) {
        let shared = (|| {
            if data.settings()?.follows.is_some() {
                return Ok(());
            }
            let json = crate::follow::players_snapshot_json(
                self.by_hash
                    .iter()
                    .map(|(hash, p)| (hash.to_hex().to_string(), p)),
            );
            data.store()?.write_players_snapshot(&json)?;
            Ok::<_, crate::error::PublisherError>(())
        })();
        if let Err(e) = shared {
            tracing::warn!(error = %e, "cannot share the players with followers");
        }
    }
}

impl ProtocolState {
    fn tokens(&self) -> Arc<TokenSet> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The enabled player whose token this is, and the generation it was
    /// checked at; the token set is reloaded first when the players' signal
    /// file changed since the last reload.
    pub(super) async fn admit(self: &Arc<Self>, token: &str) -> Result<Option<(Player, u64)>> {
        let signal = crate::stamp::FileStamp::of(&self.db.players_signal_path());
        let seen = *self.tokens_seen.lock().unwrap_or_else(|p| p.into_inner());
        if signal != seen {
            self.reload_tokens(Some(signal)).await?;
        }
        let tokens = self.tokens();
        Ok(tokens.player(token).map(|p| (p.clone(), tokens.generation)))
    }

    /// Reads the token set again and wakes waiting long-polls when its
    /// generation moved. With `signal`, the stamp of the signal file taken
    /// before: a request that raced another's reload finds it done and returns.
    async fn reload_tokens(self: &Arc<Self>, signal: Option<Option<crate::stamp::FileStamp>>) -> Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        if let Some(signal) = signal {
            if *self.tokens_seen.lock().unwrap_or_else(|p| p.into_inner()) == signal {
                return Ok(());
            }
        }
        let stamp = crate::stamp::FileStamp::of(&self.db.players_signal_path());
        let state = self.clone();
        let tokens = blocking(move || {
            let tokens = TokenSet::load(&state.db)?;
            tokens.share_with_followers(&state.data);
            Ok(tokens)
        })
        .await?;
        let generation = tokens.generation;
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tokens);
        *self.tokens_seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        self.players.send_if_modified(|g| {
            let moved = *g != generation;
            *g = generation;
            moved
        });
        Ok(())
    }

    /// Whether `admitted`'s token still belongs to an enabled player, in the
    /// token set as last reloaded.
    fn still_admitted(&self, admitted: &Admitted) -> bool {
        self.tokens().player(&admitted.token).is_some()
    }

    /// Waits until `admitted`'s token is cut off (disabled, re-keyed or removed),
    /// re-checking it each time the player set changes: `Ok` then. Never returns
    /// while the token stays good, so a caller races it against its own wait.
    pub(super) async fn revoked(self: &Arc<Self>, admitted: &Admitted) -> Result<()> {
        let mut players = self.players.subscribe();
        let mut seen = admitted.generation;
        loop {
            let moved = players.wait_for(|g| *g != seen).await.map(|g| *g);
            let Ok(generation) = moved else {
                // The sender lives as long as the state: nothing will change again.
                return std::future::pending().await;
            };
            seen = generation;
            if !self.still_admitted(admitted) {
                return Ok(());
            }
        }
    }

    /// Whether the player set changed since `admitted` was checked and its token
    /// is no longer good: the last check before an answer goes out.
    pub(super) async fn revoked_since(self: &Arc<Self>, admitted: &Admitted) -> Result<bool> {
        if *self.players.borrow() == admitted.generation {
            return Ok(false);
        }
        Ok(!self.still_admitted(admitted))
    }

    /// Polls the database's player generation every `every` (players changed by
    /// a writer that did not replace the signal file), reloading the token set
    /// and waking waiting long-polls when it moved, until `stop` turns true or
    /// its sender is gone.
    pub(crate) async fn follow_players(self: Arc<Self>, every: Duration, stop: watch::Receiver<bool>) {
        super::every_tick(every, stop, || async {
            let state = self.clone();
            let polled = match blocking(move || Ok(state.db.player_generation()?)).await {
                Ok(n) if n == self.tokens().generation => Ok(()),
                Ok(_) => self.reload_tokens(None).await,
                Err(e) => Err(e),
            };
            if let Err(e) = polled {
                tracing::warn!(error = %e, "cannot reload the players' tokens");
            }
        })
        .await
    }
}
