//! The commands a report answer may carry, allow-listed (`sync_now`, `verify_media`,
//! `restart_playback`, `send_status`; never a shell): read leniently from the answer,
//! each id run at most once (recorded in `state.sqlite` before it runs), expired ones
//! acknowledged without running, and each echoed back in a `command_done` event.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use skycast_schema::report::{Command, CommandKind, EventEntry, EventKind};
use skycast_schema::MediaId;

use crate::live::Live;
use crate::local_store::Layout;
use crate::outbox::{self, Claim, Outbox, OutboxError};

/// A command as it came in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Allowed(Command),
    /// Outside the allow-list, or malformed: never run; `id` when it had one.
    Refused {
        id: Option<String>,
        reason: String,
    },
}

/// A report answer, read so that one bad command does not void the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub acked: u64,
    pub commands: Vec<Incoming>,
}

/// Reads a report answer: `acked` must be there; each command is taken or refused
/// on its own.
pub fn parse_answer(bytes: &[u8]) -> Result<Answer, String> {
    #[derive(Deserialize)]
    struct Raw {
        acked: u64,
        #[serde(default)]
        commands: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let commands = raw
        .commands
        .into_iter()
        .map(|value| match serde_json::from_value::<Command>(value.clone()) {
            Ok(command) => Incoming::Allowed(command),
            Err(e) => Incoming::Refused {
                id: value.get("id").and_then(|v| v.as_str()).map(str::to_string),
                reason: format!(
                    "refused command `{}`: not an allowed command ({e})",
                    value.get("kind").and_then(|v| v.as_str()).unwrap_or("?")
                ),
            },
        })
        .collect();
    Ok(Answer {
        acked: raw.acked,
        commands,
    })
}

/// What a command did: the words of its `command_done`, and events it gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    pub detail: String,
    pub events: Vec<EventEntry>,
}

/// What commands act on; the daemon's implementation is [`crate::daemon`]'s.
pub trait Actions: Send + Sync {
    fn run(&self, kind: CommandKind) -> BoxFuture<'_, Done>;
}

/// Runs the commands of an answer against `actions`: each id at most once, ever;
/// expired ones (their `expires_at` before `now`, the corrected clock) and refused
/// ones are acknowledged without running. Returns how many `command_done` events
/// were appended.
pub async fn run_commands(
    outbox: &mut Outbox,
    incoming: Vec<Incoming>,
    now: DateTime<Utc>,
    actions: &dyn Actions,
) -> Result<usize, OutboxError> {
    let mut done = 0;
    for command in incoming {
        let (id, kind, refusal) = match command {
            Incoming::Allowed(c) => {
                let refusal = expiry_refusal(&c, now);
                (c.id, Some(c.kind), refusal)
            }
            Incoming::Refused { id: Some(id), reason } => {
                tracing::warn!(command_id = %id, "{reason}");
                (id, None, Some(reason))
            }
            Incoming::Refused { id: None, reason } => {
                tracing::warn!("{reason}");
                continue;
            }
        };
        match outbox.claim_command(&id, kind.map_or("refused", CommandKind::as_str), now)? {
            Claim::Done => continue,
            Claim::Unconfirmed => {
                outbox.finish_command(&id, now, "not confirmed: the player restarted while running it")?;
            }
            Claim::New => {
                let detail = match (kind, refusal) {
                    (_, Some(refusal)) => refusal,
                    (Some(kind), None) => {
                        tracing::info!(command_id = %id, kind = kind.as_str(), "running command");
                        let result = actions.run(kind).await;
                        for event in result.events {
                            outbox.append_event(now, event)?;
                        }
                        result.detail
                    }
                    (None, None) => continue,
                };
                outbox.finish_command(&id, now, &detail)?;
            }
        }
        done += 1;
    }
    Ok(done)
}

fn expiry_refusal(command: &Command, now: DateTime<Utc>) -> Option<String> {
    match command.expires_at.parse::<DateTime<Utc>>() {
        Ok(expires) if expires < now => Some(format!(
            "expired: {} was due by {}, the player's clock read {}; not run",
            command.kind.as_str(),
            command.expires_at,
            outbox::rfc3339(now)
        )),
        Ok(_) => None,
        Err(e) => Some(format!(
            "refused: expires_at `{}` is not an RFC 3339 instant ({e}); not run",
            command.expires_at
        )),
    }
}

/// A request to restart the player thread; the daemon answers with what it did.
pub type RestartRequest = tokio::sync::oneshot::Sender<String>;

/// What commands do in the daemon.
pub struct DaemonActions {
    pub live: Arc<Live>,
    pub layout: Layout,
    /// To the daemon's loop; `None` without a player.
    pub restart: Option<tokio::sync::mpsc::Sender<RestartRequest>>,
}

impl DaemonActions {
    async fn verify_media(&self) -> Done {
        let layout = self.layout.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let named: Vec<MediaId> = match layout.current_version() {
                Ok(Some(v)) => layout
                    .load_manifest(v)
                    .map(|m| m.media.iter().map(|e| e.id).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            layout
                .verify_all_media(&named)
                .map(|damaged| (named.len(), damaged))
        })
        .await;
        match checked {
            Ok(Ok((named, damaged))) => {
                if !damaged.is_empty() {
                    // The follower downloads what was removed again.
                    self.live.sync_now();
                }
                Done {
                    detail: format!(
                        "verify_media: {} damaged or missing (the active version names {named})",
                        damaged.len()
                    ),
                    events: damaged.iter().map(|d| media_damaged(&d.id, &d.reason)).collect(),
                }
            }
            Ok(Err(e)) => Done {
                detail: format!("verify_media failed: {e}"),
                events: Vec::new(),
            },
            Err(e) => Done {
                detail: format!("verify_media failed: {e}"),
                events: Vec::new(),
            },
        }
    }

    async fn restart_playback(&self) -> String {
        let Some(restart) = &self.restart else {
            return "restart_playback: this player does not play (no `shop` in its config)".into();
        };
        let (reply, done) = tokio::sync::oneshot::channel();
        if restart.send(reply).await.is_err() {
            return "restart_playback failed: the daemon is stopping".into();
        }
        match tokio::time::timeout(Duration::from_secs(30), done).await {
            Ok(Ok(detail)) => detail,
            _ => "restart_playback: no confirmation from the daemon within 30 s".into(),
        }
    }
}

impl Actions for DaemonActions {
    fn run(&self, kind: CommandKind) -> BoxFuture<'_, Done> {
        Box::pin(async move {
            let said = |detail: &str| Done {
                detail: detail.to_string(),
                events: Vec::new(),
            };
            match kind {
                CommandKind::SyncNow => {
                    self.live.sync_now();
                    said("sync_now: the sync started")
                }
                CommandKind::SendStatus => {
                    self.live.report_soon();
                    said("send_status: reported")
                }
                CommandKind::VerifyMedia => self.verify_media().await,
                CommandKind::RestartPlayback => said(&self.restart_playback().await),
            }
        })
    }
}

/// The `media_damaged` event for a damaged or missing local file.
pub fn media_damaged(id: &MediaId, reason: &str) -> EventEntry {
    let mut event = outbox::event(EventKind::MediaDamaged, reason);
    event.media = Some(id.to_string());
    event
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Counting(Mutex<Vec<CommandKind>>);

    impl Actions for Counting {
        fn run(&self, kind: CommandKind) -> BoxFuture<'_, Done> {
            self.0.lock().unwrap().push(kind);
            Box::pin(async move {
                Done {
                    detail: format!("{} done", kind.as_str()),
                    events: Vec::new(),
                }
            })
        }
    }

    const NOW: &str = "2026-12-01T10:00:00Z";

    fn answer(commands: &str) -> Answer {
        parse_answer(format!(r#"{{"acked": 3, "commands": [{commands}]}}"#).as_bytes()).unwrap()
    }

    fn command_done_ids(outbox: &Outbox) -> Vec<(String, String)> {
        outbox
            .pending(100)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.body {
                skycast_schema::report::EntryBody::Event(e) if e.kind == EventKind::CommandDone => {
                    Some((e.command_id.unwrap(), e.detail))
                }
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_re_sent_command_id_is_not_run_twice_also_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let now = NOW.parse().unwrap();
        let sync = r#"{"id": "c1", "kind": "sync_now", "requested_by": "ana", "expires_at": "2026-12-01T10:02:00Z"}"#;
        let actions = Counting::default();
        {
            let mut outbox = Outbox::open(&db).unwrap();
            assert_eq!(
                run_commands(&mut outbox, answer(sync).commands, now, &actions)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(
                run_commands(&mut outbox, answer(sync).commands, now, &actions)
                    .await
                    .unwrap(),
                0
            );
        }
        let mut outbox = Outbox::open(&db).unwrap();
        assert_eq!(
            run_commands(&mut outbox, answer(sync).commands, now, &actions)
                .await
                .unwrap(),
            0
        );
        assert_eq!(*actions.0.lock().unwrap(), [CommandKind::SyncNow]);
        assert_eq!(
            command_done_ids(&outbox),
            [("c1".to_string(), "sync_now done".to_string())]
        );
    }

    #[tokio::test]
    async fn an_expired_command_is_not_run_but_acknowledged_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&dir.path().join("state.sqlite")).unwrap();
        let actions = Counting::default();
        let old = r#"{"id": "c9", "kind": "restart_playback", "requested_by": "ana", "expires_at": "2026-12-01T09:58:00Z"}"#;
        let n = run_commands(&mut outbox, answer(old).commands, NOW.parse().unwrap(), &actions)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(
            actions.0.lock().unwrap().is_empty(),
            "an expired command does not run"
        );
        let done = command_done_ids(&outbox);
        assert_eq!(done[0].0, "c9");
        assert!(done[0].1.starts_with("expired"), "{done:?}");
    }

    #[tokio::test]
    async fn a_command_outside_the_allow_list_is_refused_without_failing_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&dir.path().join("state.sqlite")).unwrap();
        let actions = Counting::default();
        let parsed = answer(
            r#"{"id": "x1", "kind": "shell", "requested_by": "mallory", "expires_at": "2099-01-01T00:00:00Z", "args": "rm -rf /"},
               {"id": "c2", "kind": "send_status", "requested_by": "ana", "expires_at": "2099-01-01T00:00:00Z"},
               "not even an object""#,
        );
        assert_eq!(parsed.acked, 3, "the answer is still read");
        assert_eq!(parsed.commands.len(), 3);
        let n = run_commands(&mut outbox, parsed.commands, NOW.parse().unwrap(), &actions)
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(*actions.0.lock().unwrap(), [CommandKind::SendStatus]);
        let done = command_done_ids(&outbox);
        assert_eq!(done[0].0, "x1");
        assert!(done[0].1.contains("refused command `shell`"), "{done:?}");
        assert!(parse_answer(b"{\"commands\": []}").is_err(), "acked is required");
    }
}
