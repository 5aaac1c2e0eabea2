//! A second site (`skycast-publisher follow`): a read-only copy of the
//! primary's store, fetched with git, verified version by version with the
//! primary's public key before `main` moves, and served to players like the
//! primary's; the players' tokens come along as the primary's snapshot. The
//! copy never signs (its directory has no signing key and refuses to publish).
//!
//! What is served is only ever what verified: a fetch that brings a bad
//! signature, a media file that does not hash to its name, a version number
//! that goes back, or a rewritten history leaves `main` where it was and is
//! logged; the copy keeps serving its last good version.

use serde::{Deserialize, Serialize};

use crate::data_dir::DataDir;
use crate::db::Player;
use crate::error::{PublisherError, Result};

/// One player of the primary's snapshot (see [`crate::store::PLAYERS_REF`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotPlayer {
    id: String,
    shop: String,
    /// blake3 of the token, hex: the token itself never leaves the player.
    token_hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PlayersSnapshot {
    players: Vec<SnapshotPlayer>,
}

/// The JSON the primary commits for its followers: enabled players by token
/// hash, sorted by id so that the same set always gives the same bytes.
pub fn players_snapshot_json<'a>(players: impl Iterator<Item = (String, &'a Player)>) -> Vec<u8> {
    let mut players: Vec<SnapshotPlayer> = players
        .map(|(token_hash, p)| SnapshotPlayer {
            id: p.id.clone(),
            shop: p.shop.clone(),
            token_hash,
        })
        .collect();
    players.sort_by(|a, b| a.id.cmp(&b.id));
    // A Vec of plain strings always serializes.
    serde_json::to_vec_pretty(&PlayersSnapshot { players }).unwrap_or_default()
}

/// What one fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    /// The primary has published nothing yet.
    Nothing,
    UpToDate {
        version: u64,
    },
    Advanced {
        from: Option<u64>,
        to: u64,
    },
}

impl std::fmt::Display for Pulled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pulled::Nothing => write!(f, "the primary has published nothing yet"),
            Pulled::UpToDate { version } => write!(f, "up to date at version {version}"),
            Pulled::Advanced { from: None, to } => write!(f, "copied versions 1 to {to}"),
            Pulled::Advanced { from: Some(from), to } => write!(f, "copied versions {} to {to}", from + 1),
        }
    }
}

/// Fetches from the primary at `from`, verifies every new version, moves
/// `main` to the primary's when all verified, and copies the players. Blocking.
pub fn pull_once(data: &DataDir, from: &str) -> Result<Pulled> {
    let store = data.store()?;
    let trust = crate::trust::HistoryTrust::of_data_dir(data)?;
    let incoming = store.fetch_primary(from)?;
    let pulled = match incoming {
        None => Pulled::Nothing,
        Some(incoming) => {
            let current = store.head_version()?;
            if current.map(|(_, c)| c) == Some(incoming) {
                Pulled::UpToDate {
                    version: current.map_or(0, |(v, _)| v),
                }
            } else {
                let mut new = store.commits_since(incoming, current.map(|(_, c)| c))?;
                new.reverse();
                let mut previous = current.map(|(v, _)| v);
                let mut checked = Default::default();
                for (version, commit) in &new {
                    let refuse = |reason: String| PublisherError::FollowRefused {
                        primary: from.to_string(),
                        version: *version,
                        reason,
                    };
                    if previous.is_some_and(|p| *version <= p) {
                        return Err(refuse(format!(
                            "it does not follow version {}: history was rewritten",
                            previous.unwrap_or_default()
                        )));
                    }
                    let trusted = trust
                        .keys_at(&store, *commit)
                        .map_err(|e| refuse(e.to_string()))?;
                    let (_, problems) =
                        crate::audit::check_commit(&store, *commit, *version, &trusted, &mut checked)?;
                    if !problems.is_empty() {
                        return Err(refuse(problems.join("; ")));
                    }
                    previous = Some(*version);
                }
                store.advance_main(incoming)?;
                Pulled::Advanced {
                    from: current.map(|(v, _)| v),
                    to: previous.unwrap_or_default(),
                }
            }
        }
    };
    if let Some(json) = store.incoming_players()? {
        let snapshot: PlayersSnapshot =
            serde_json::from_slice(&json).map_err(|e| PublisherError::FollowRefused {
                primary: from.to_string(),
                version: 0,
                reason: format!("its players snapshot is not valid JSON: {e}"),
            })?;
        let rows: Vec<(String, Player)> = snapshot
            .players
            .into_iter()
            .map(|p| {
                (
                    p.token_hash,
                    Player {
                        id: p.id,
                        shop: p.shop,
                    },
                )
            })
            .collect();
        if data.db()?.replace_players(&rows)? {
            tracing::info!(player_count = rows.len(), "players copied from the primary");
        }
    }
    Ok(pulled)
}

/// One fetch from the primary, for `serve`'s timer: a failure is logged and the
/// copy keeps serving what it has (players fail over to it because the primary
/// is down, so the primary's store being unreachable is normal then).
pub async fn tick(data: DataDir, from: String) {
    let pulled = tokio::task::spawn_blocking(move || pull_once(&data, &from)).await;
    match pulled {
        Ok(Ok(Pulled::Advanced { from, to })) => {
            tracing::info!(from_version = from, version = to, "copied from the primary")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot follow the primary"),
        Err(e) => tracing::error!(error = %e, "the follow task failed"),
    }
}
