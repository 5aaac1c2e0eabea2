//! Cutting off a token that was let in: every request names the player-set
//! generation it was admitted under, and a long-poll waiting in `head` re-checks
//! its token whenever that generation moves, so a player disabled, re-keyed or
//! removed (by the web UI in this process or the CLI in another) gets 401 within
//! one poll tick instead of its answer.
//!
//! The generation is `players`' change counter in the database (bumped by
//! trigger on every write), read once per tick by [`ProtocolState::follow_players`]
//! for the whole server: one cheap query however many long-polls wait, and a
//! token lookup per waiting long-poll only when a player actually changed.

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

impl ProtocolState {
    /// Whether `admitted`'s token still belongs to an enabled player.
    pub(super) async fn still_admitted(self: &Arc<Self>, admitted: &Admitted) -> Result<bool> {
        Ok(self.player_of(&admitted.token).await?.is_some())
    }

    /// The enabled player whose token this is.
    pub(super) async fn player_of(self: &Arc<Self>, token: &str) -> Result<Option<Player>> {
        let (state, token) = (self.clone(), token.to_string());
        blocking(move || Ok(state.db.player_by_token(&token)?)).await
    }

    /// Waits until `admitted`'s token is cut off (disabled, re-keyed or removed),
    /// re-checking it each time the player set changes: `Ok` then. Never returns
    /// while the token stays good, so a caller races it against its own wait. A
    /// database failure ends the wait with that error (the request can no longer
    /// be vouched for; the player's retry is checked afresh).
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
            if !self.still_admitted(admitted).await? {
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
        Ok(!self.still_admitted(admitted).await?)
    }

    /// The generation a request is admitted under: read *before* its token is
    /// looked up, so any change after the lookup moves it.
    pub(super) fn player_generation(&self) -> u64 {
        *self.players.borrow()
    }

    /// Polls the database's player generation every `every` (players changed by
    /// another process, or by the web UI), waking waiting long-polls when it moves,
    /// until `stop` turns true or its sender is gone.
    pub(crate) async fn follow_players(self: Arc<Self>, every: Duration, stop: watch::Receiver<bool>) {
        super::every_tick(every, stop, || async {
            let state = self.clone();
            match blocking(move || Ok(state.db.player_generation()?)).await {
                Ok(n) => {
                    self.players.send_if_modified(|g| {
                        let moved = *g != n;
                        *g = n;
                        moved
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the players' generation"),
            }
        })
        .await
    }
}
