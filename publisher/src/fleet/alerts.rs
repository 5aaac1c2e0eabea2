//! Alerts (issue 11): what is wrong with a player, in words a shop operator
//! understands, in English and French. [`evaluate`] turns per-player facts into
//! conditions (pure, clock as a parameter); [`Sweeper`] applies them to the
//! `alerts` table: it opens what is new, starts a hold-down for what cleared,
//! resolves after the hold-down, so each incident is opened once and resolved
//! once. `serve` runs a [`SweepTask`] every second; `alerts` on the command line
//! lists them ([`list`], [`acknowledge`], [`render`]).
//!
//! Planned vs played: the fixed-time ads and closing announcements come from
//! `skycast_schema::planned`, which asks the same resolver the players run.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use skycast_schema::planned::{planned_messages, PlannedKind, PlannedMessage};
use skycast_schema::{Head, Manifest, ShopSchedule, StartMode};
use tokio::sync::watch;

use super::{parse_instant, rfc3339, AlertKind, AlertView};
use crate::data_dir::DataDir;
use crate::db::{
    AlertOpening, AlertPlayerFacts, AlertRow, Db, DbError, IntegrityEvent, MirrorRow, NewAlert, PlayFact,
};
use crate::error::{PublisherError, Result};

impl AlertKind {
    pub const ALL: [AlertKind; 10] = [
        AlertKind::Unreachable,
        AlertKind::OutOfSync,
        AlertKind::StaleVersion,
        AlertKind::SilentWhileOpen,
        AlertKind::MissedAd,
        AlertKind::IntegrityFailure,
        AlertKind::ClockSkew,
        AlertKind::DiskLow,
        AlertKind::MirrorFailing,
        AlertKind::ResignOverdue,
    ];

    /// As stored and serialised (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Unreachable => "unreachable",
            AlertKind::OutOfSync => "out_of_sync",
            AlertKind::StaleVersion => "stale_version",
            AlertKind::SilentWhileOpen => "silent_while_open",
            AlertKind::MissedAd => "missed_ad",
            AlertKind::IntegrityFailure => "integrity_failure",
            AlertKind::ClockSkew => "clock_skew",
            AlertKind::DiskLow => "disk_low",
            AlertKind::MirrorFailing => "mirror_failing",
            AlertKind::ResignOverdue => "resign_overdue",
        }
    }

    pub fn parse(text: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// A past incident (a scheduled message that did not play): resolved after
    /// [`AlertConfig::missed_ad_resolve_after`] or when acknowledged, not when its
    /// condition goes away.
    pub fn is_past_incident(self) -> bool {
        self == AlertKind::MissedAd
    }
}

impl AlertView {
    /// `None` for a kind this build does not know (written by a newer one).
    pub fn from_row(row: AlertRow) -> Option<AlertView> {
        Some(AlertView {
            id: row.id,
            kind: AlertKind::parse(&row.kind)?,
            player_id: row.player_id,
            shop: row.shop,
            opened_at: row.opened_at,
            resolved_at: row.resolved_at,
            acknowledged_by: row.acknowledged_by,
            text_en: row.text_en,
            text_fr: row.text_fr,
        })
    }
}

/// The thresholds of the alerts; [`AlertConfig::default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    /// No report for this long: unreachable (`serve --offline-after`, 30 s).
    pub offline_after: Duration,
    /// Not on the head version this long after it was published (2 min).
    pub out_of_sync_after: Duration,
    /// The version played expires within this (1 day).
    pub expiry_warning: Duration,
    /// Open but no sound for this long without a break (20 s).
    pub silent_after: Duration,
    /// How far back planned messages are checked against plays (15 min: more than
    /// the resolver's 10-minute grace for a fixed-time slot plus `missed_ad_grace`).
    pub missed_ad_lookback: Duration,
    /// How long after a message could start (after the current track, for a
    /// `boundary` one) its play must have been reported (2 min).
    pub missed_ad_grace: Duration,
    /// How often planned vs played is checked (10 s; it reads the plays).
    pub missed_ad_every: Duration,
    /// A missed-ad alert resolves by itself after this (1 h).
    pub missed_ad_resolve_after: Duration,
    /// Signature or hash failures received within this keep the alert open (10 min).
    pub integrity_window: Duration,
    /// Clock offset beyond which the clock is skewed (5,000 ms).
    pub max_clock_offset_ms: i64,
    /// Free disk below this is low (500 MB).
    pub min_free_disk_bytes: u64,
    /// A condition gone this long resolves its alert (10 s); back before, the
    /// alert stays open as it was.
    pub hold_down: Duration,
    /// How often `serve` sweeps (1 s).
    pub sweep_every: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            offline_after: super::DEFAULT_OFFLINE_AFTER,
            out_of_sync_after: Duration::from_secs(120),
            expiry_warning: Duration::from_secs(24 * 3600),
            silent_after: Duration::from_secs(20),
            missed_ad_lookback: Duration::from_secs(15 * 60),
            missed_ad_grace: Duration::from_secs(120),
            missed_ad_every: Duration::from_secs(10),
            missed_ad_resolve_after: Duration::from_secs(3600),
            integrity_window: Duration::from_secs(10 * 60),
            max_clock_offset_ms: 5_000,
            min_free_disk_bytes: 500 * 1000 * 1000,
            hold_down: Duration::from_secs(10),
            sweep_every: Duration::from_secs(1),
        }
    }
}

/// What [`evaluate`] looks at.
#[derive(Debug, Clone, Default)]
pub struct Facts<'m> {
    /// 0 before the first publish.
    pub head_version: u64,
    pub head_published_at: Option<DateTime<Utc>>,
    /// The head version's verified manifest, when it could be read.
    pub manifest: Option<&'m Manifest>,
    pub players: Vec<AlertPlayerFacts>,
    /// Plays since well before the look-back; `None`: planned vs played is not
    /// checked this time.
    pub plays: Option<Vec<PlayFact>>,
    /// Integrity events within [`AlertConfig::integrity_window`].
    pub integrity: Vec<IntegrityEvent>,
    /// Since when this server listens: nobody could report while it was down,
    /// so silence is counted from here at the earliest.
    pub listening_since: Option<DateTime<Utc>>,
    /// The object-storage mirrors and their queues (`mirror_failing`).
    pub mirrors: Vec<MirrorRow>,
}

/// Something wrong now, as an alert would say it.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub kind: AlertKind,
    pub player_id: String,
    pub shop: String,
    /// Distinguishes two incidents of one kind on one player (a missed ad's
    /// slot and media); empty otherwise.
    pub subject: String,
    pub text_en: String,
    pub text_fr: String,
    pub detail: serde_json::Value,
    /// How long it must hold without a break before an alert opens.
    pub onset: Duration,
}

type AlertKey = (AlertKind, String, String);

impl Condition {
    fn key(&self) -> AlertKey {
        (self.kind, self.player_id.clone(), self.subject.clone())
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// A duration in words: `45 s`, `3 min`, `5 h`, `3 days` / `3 jours`.
fn span(d: TimeDelta) -> (String, String) {
    let secs = d.num_seconds().max(0);
    match secs {
        s if s < 120 => (format!("{s} s"), format!("{s} s")),
        s if s < 120 * 60 => (format!("{} min", s / 60), format!("{} min", s / 60)),
        s if s < 48 * 3600 => (format!("{} h", s / 3600), format!("{} h", s / 3600)),
        s => (format!("{} days", s / 86_400), format!("{} jours", s / 86_400)),
    }
}

/// The conditions that hold at `now`. Disabled players have none.
pub fn evaluate(facts: &Facts<'_>, now: DateTime<Utc>, config: &AlertConfig) -> Vec<Condition> {
    let mut out = Vec::new();
    let mut planned_by_shop: HashMap<&str, Vec<PlannedMessage>> = HashMap::new();
    let mut plays_by_player: HashMap<&str, Vec<&PlayFact>> = HashMap::new();
    for play in facts.plays.iter().flatten() {
        plays_by_player.entry(&play.player_id).or_default().push(play);
    }
    let mut integrity_by_player: HashMap<&str, Vec<&IntegrityEvent>> = HashMap::new();
    for event in &facts.integrity {
        integrity_by_player
            .entry(&event.player_id)
            .or_default()
            .push(event);
    }
    for mirror in &facts.mirrors {
        if let Some(c) = mirror_failing(mirror, facts.head_version) {
            out.push(c);
        }
    }
    if let Some(c) = facts.manifest.and_then(|m| resign_overdue(m, now)) {
        out.push(c);
    }
    for player in facts.players.iter().filter(|p| !p.disabled) {
        let condition = |kind, subject: String, (en, fr): (String, String), detail| Condition {
            kind,
            player_id: player.player_id.clone(),
            shop: player.shop.clone(),
            subject,
            text_en: en,
            text_fr: fr,
            detail,
            onset: Duration::ZERO,
        };
        if let Some((t, d)) = unreachable(player, facts, now, config) {
            out.push(condition(AlertKind::Unreachable, String::new(), t, d));
        }
        // The rest is about what the player reported.
        let Some(reported) = player.last_report_at else {
            continue;
        };
        let events = integrity_by_player.get(player.player_id.as_str());
        let found = [
            (AlertKind::OutOfSync, out_of_sync(player, facts, now, config)),
            (AlertKind::StaleVersion, stale_version(player, facts, now, config)),
            (AlertKind::SilentWhileOpen, silent_while_open(player, facts, now)),
            (
                AlertKind::IntegrityFailure,
                events.and_then(|e| integrity(player, e, now, config)),
            ),
            (AlertKind::ClockSkew, clock_skew(player, config)),
            (AlertKind::DiskLow, disk_low(player, config)),
        ];
        for (kind, (t, d)) in found.into_iter().filter_map(|(kind, f)| Some((kind, f?))) {
            let onset = match kind {
                AlertKind::SilentWhileOpen => config.silent_after,
                _ => Duration::ZERO,
            };
            out.push(Condition {
                onset,
                ..condition(kind, String::new(), t, d)
            });
        }
        if let (Some(manifest), Some(_)) = (facts.manifest, &facts.plays) {
            let planned = planned_by_shop.entry(&player.shop).or_insert_with(|| {
                let from = now - delta(config.missed_ad_lookback);
                planned_messages(manifest, &player.shop, from, now).unwrap_or_default()
            });
            let plays = plays_by_player
                .get(player.player_id.as_str())
                .map_or(&[][..], |p| &p[..]);
            let missed = missed_ads(player, reported, manifest, planned, plays, facts, now, config);
            for (subject, t, d) in missed {
                out.push(condition(AlertKind::MissedAd, subject, t, d));
            }
        }
    }
    out
}

type Words = ((String, String), serde_json::Value);

fn unreachable(
    p: &AlertPlayerFacts,
    facts: &Facts<'_>,
    now: DateTime<Utc>,
    config: &AlertConfig,
) -> Option<Words> {
    let heard = p.last_report_at.or(p.registered_at)?;
    let counted_from = facts.listening_since.map_or(heard, |since| heard.max(since));
    // In whole seconds, as the dashboard judges UP (`fleet::player_view`): report
    // times are kept to the second, so an exact comparison would open this alert
    // up to a second early, while the player still shows UP.
    let offline_secs = i64::try_from(config.offline_after.as_secs()).unwrap_or(i64::MAX);
    if (now - counted_from).num_seconds() <= offline_secs {
        return None;
    }
    let (en, fr) = span(now - heard);
    let (shop, id) = (&p.shop, &p.player_id);
    let words = match p.last_report_at {
        Some(_) => (
            format!(
                "Shop «{shop}»: the player {id} has not been heard from for {en}. \
                 Check that the box is powered and online."
            ),
            format!(
                "Magasin «{shop}» : le lecteur {id} ne donne plus de nouvelles depuis {fr}. \
                 Vérifiez que le boîtier est allumé et connecté."
            ),
        ),
        None => (
            format!(
                "Shop «{shop}»: the player {id} has not reported since it was registered {en} ago. \
                 Check that the box is installed, powered and online, with the configuration `player add` printed."
            ),
            format!(
                "Magasin «{shop}» : le lecteur {id} n'a donné aucune nouvelle depuis son enregistrement il y a {fr}. \
                 Vérifiez que le boîtier est installé, allumé et connecté, avec la configuration donnée par `player add`."
            ),
        ),
    };
    let detail = json!({
        "last_report_at": p.last_report_at.map(rfc3339),
        "silent_secs": (now - heard).num_seconds(),
    });
    Some((words, detail))
}

fn out_of_sync(
    p: &AlertPlayerFacts,
    facts: &Facts<'_>,
    now: DateTime<Utc>,
    config: &AlertConfig,
) -> Option<Words> {
    let head = facts.head_version;
    let published = facts.head_published_at?;
    if head == 0 || p.active_version.is_some_and(|v| v >= head) {
        return None;
    }
    // Counted from the publish, or from when the player was first seen behind
    // (a player registered later gets its time to sync).
    let behind_since = p.behind_since.map_or(published, |t| t.max(published));
    if now - behind_since <= delta(config.out_of_sync_after) {
        return None;
    }
    let (en, fr) = span(now - published);
    let (shop, id) = (&p.shop, &p.player_id);
    let words = match p.active_version {
        Some(v) => {
            let behind = head - v;
            (
                format!(
                    "Shop «{shop}»: the player {id} still plays version {v} ({behind} behind), {en} after version {head} was published. \
                     Check its network and its recent events; «Sync now» asks it to sync at once."
                ),
                format!(
                    "Magasin «{shop}» : le lecteur {id} joue encore la version {v} ({behind} de retard), {fr} après la publication de la version {head}. \
                     Vérifiez sa connexion réseau et ses derniers événements ; «Synchroniser» lui demande de se mettre à jour tout de suite."
                ),
            )
        }
        None => (
            format!(
                "Shop «{shop}»: the player {id} has not installed any version yet, {en} after version {head} was published. \
                 Check its network, its free disk space and its recent events."
            ),
            format!(
                "Magasin «{shop}» : le lecteur {id} n'a encore installé aucune version, {fr} après la publication de la version {head}. \
                 Vérifiez sa connexion réseau, son espace disque libre et ses derniers événements."
            ),
        ),
    };
    let detail = json!({"active_version": p.active_version, "head_version": head, "head_published_at": rfc3339(published)});
    Some((words, detail))
}

fn stale_version(
    p: &AlertPlayerFacts,
    facts: &Facts<'_>,
    now: DateTime<Utc>,
    config: &AlertConfig,
) -> Option<Words> {
    let manifest = facts.manifest?;
    let v = p.active_version?;
    let expires = manifest.expires_at.0;
    let left = expires - now;
    if left >= delta(config.expiry_warning) {
        return None;
    }
    let head = manifest.version();
    let when = expires.format("%Y-%m-%d %H:%M UTC");
    let (shop, id) = (&p.shop, &p.player_id);
    let words = if v != head {
        let (en, fr) = span(left);
        let (en, fr) = if left > TimeDelta::zero() {
            (format!("expires in {en}"), format!("expire dans {fr}"))
        } else {
            (
                format!("has expired ({en} ago)"),
                format!("a expiré (il y a {fr})"),
            )
        };
        (
            format!(
                "Shop «{shop}»: the player {id} is behind on version {v}, and the latest version {head} itself {en} ({when}). \
                 Publish a new version and check that the player syncs."
            ),
            format!(
                "Magasin «{shop}» : le lecteur {id} est en retard sur la version {v}, et la dernière version {head} elle-même {fr} ({when}). \
                 Publiez une nouvelle version et vérifiez que le lecteur se synchronise."
            ),
        )
    } else if left > TimeDelta::zero() {
        let (en, fr) = span(left);
        (
            format!(
                "Shop «{shop}»: version {v}, which the player {id} plays, expires in {en} ({when}). \
                 Publish a new version before then."
            ),
            format!(
                "Magasin «{shop}» : la version {v}, que joue le lecteur {id}, expire dans {fr} ({when}). \
                 Publiez une nouvelle version d'ici là."
            ),
        )
    } else {
        let (en, fr) = span(-left);
        (
            format!(
                "Shop «{shop}»: version {v}, which the player {id} plays, expired {en} ago ({when}). \
                 Publish a new version now."
            ),
            format!(
                "Magasin «{shop}» : la version {v}, que joue le lecteur {id}, a expiré il y a {fr} ({when}). \
                 Publiez une nouvelle version dès maintenant."
            ),
        )
    };
    let detail = json!({"active_version": v, "head_version": head, "expires_at": rfc3339(expires)});
    Some((words, detail))
}

/// The output state in words, English then French.
fn output_words(output: &str) -> (&str, &str) {
    match output {
        "no_device" => ("no sound device", "aucun périphérique audio"),
        "error" => ("the sound output failed", "la sortie audio est en erreur"),
        "idle_closed" => (
            "idle as if the shop were closed",
            "en veille comme si le magasin était fermé",
        ),
        "not_started" => ("playback has not started", "la lecture n'a pas démarré"),
        other => (other, other),
    }
}

fn silent_while_open(p: &AlertPlayerFacts, facts: &Facts<'_>, now: DateTime<Utc>) -> Option<Words> {
    let output = p.output.as_deref()?;
    if output == "playing" {
        return None;
    }
    let schedule = ShopSchedule::new(facts.manifest?, &p.shop).ok()?;
    schedule.open_period(now)?;
    let (en_output, fr_output) = output_words(output);
    let (shop, id) = (&p.shop, &p.player_id);
    let words = (
        format!(
            "Shop «{shop}» is open but the player {id} plays no sound ({en_output}). \
             Check the speakers, the cable and the sound card; «Restart playback» reopens the output."
        ),
        format!(
            "Le magasin «{shop}» est ouvert mais le lecteur {id} ne diffuse aucun son ({fr_output}). \
             Vérifiez les haut-parleurs, le câble et la carte son ; «Redémarrer la lecture» rouvre la sortie."
        ),
    );
    Some((words, json!({"output": output})))
}

/// How far before its slot a play still counts for a planned message (the
/// player's corrected clock may be a little off).
const PLAY_MATCH_EARLY: TimeDelta = TimeDelta::seconds(60);

#[allow(clippy::too_many_arguments)]
fn missed_ads(
    p: &AlertPlayerFacts,
    reported: DateTime<Utc>,
    manifest: &Manifest,
    planned: &[PlannedMessage],
    plays: &[&PlayFact],
    facts: &Facts<'_>,
    now: DateTime<Utc>,
    config: &AlertConfig,
) -> Vec<(String, (String, String), serde_json::Value)> {
    let grace = delta(config.missed_ad_grace);
    let mut out = Vec::new();
    for message in planned {
        // A version published after the slot could not have been played at it.
        if facts.head_published_at.is_some_and(|t| message.playable_from < t) {
            continue;
        }
        let media = message.media.to_string();
        let in_window = |play: &&&PlayFact| {
            play.media == media
                && message.playable_from - PLAY_MATCH_EARLY <= play.started_at
                && play.started_at <= message.playable_until + PLAY_MATCH_EARLY
        };
        let played = plays
            .iter()
            .any(|play| play.outcome != "skipped" && (play.source == message.key || in_window(&play)));
        if played {
            continue;
        }
        let skipped = plays
            .iter()
            .filter(in_window)
            .any(|play| play.outcome == "skipped");
        let check_at = if skipped {
            message.playable_from
        } else {
            let starts_by = match message.mode.start {
                StartMode::Cut => message.playable_from,
                StartMode::Boundary => track_end(plays, manifest, message.playable_from)
                    .map_or(message.playable_until, |end| end.max(message.playable_from))
                    .min(message.playable_until),
            };
            starts_by + grace
        };
        // Wait until its play would have been reported, by a player that reported since.
        if now < check_at || reported < check_at {
            continue;
        }
        out.push((
            format!("{}/{media}", rfc3339(message.planned)),
            missed_words(p, manifest, message, skipped),
            json!({
                "key": message.key,
                "media": media,
                "planned": rfc3339(message.planned),
                "skipped": skipped,
            }),
        ));
    }
    out
}

/// When the play going on at `at` ends (or ended): a `boundary` message waits for it.
fn track_end(plays: &[&PlayFact], manifest: &Manifest, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let current = plays
        .iter()
        .filter(|play| play.started_at <= at)
        .max_by_key(|play| play.started_at)?;
    current.ended_at.or_else(|| {
        let entry = manifest
            .media
            .iter()
            .find(|m| m.id.to_string() == current.media)?;
        let ms = i64::try_from(entry.duration_ms).ok()?;
        Some(current.started_at + TimeDelta::milliseconds(ms))
    })
}

fn missed_words(
    p: &AlertPlayerFacts,
    manifest: &Manifest,
    message: &PlannedMessage,
    skipped: bool,
) -> (String, String) {
    let title = manifest
        .media
        .iter()
        .find(|m| m.id == message.media)
        .map_or_else(|| message.media.short(), |m| m.title.clone());
    let local = ShopSchedule::new(manifest, &p.shop).map_or_else(
        |_| message.planned.naive_utc(),
        |s| s.local_datetime(message.planned),
    );
    let (time, date) = (local.format("%H:%M"), local.format("%Y-%m-%d"));
    let (what_en, what_fr) = match message.kind {
        PlannedKind::FixedTimeAd { .. } => ("the ad", "la publicité"),
        PlannedKind::Closing { .. } => ("the closing announcement", "l'annonce de fermeture"),
    };
    let (why_en, why_fr) = if skipped {
        (
            " (its file could not be played)",
            " (son fichier n'a pas pu être lu)",
        )
    } else {
        ("", "")
    };
    let (shop, id) = (&p.shop, &p.player_id);
    (
        format!(
            "Shop «{shop}»: {what_en} «{title}» planned at {time} on {date} did not play on the player {id}{why_en}. \
             Check the player's recent events (a damaged file, no sound output) and acknowledge this alert once handled."
        ),
        format!(
            "Magasin «{shop}» : {what_fr} «{title}» prévue à {time} le {date} n'a pas été diffusée par le lecteur {id}{why_fr}. \
             Consultez ses derniers événements (fichier endommagé, sortie audio) et acquittez cette alerte une fois traitée."
        ),
    )
}

fn integrity(
    p: &AlertPlayerFacts,
    events: &[&IntegrityEvent],
    now: DateTime<Utc>,
    config: &AlertConfig,
) -> Option<Words> {
    let since = now - delta(config.integrity_window);
    let recent: Vec<&&IntegrityEvent> = events.iter().filter(|e| e.received_at >= since).collect();
    let latest = recent.iter().max_by_key(|e| e.received_at)?;
    let count = recent.len();
    let (en_window, fr_window) = span(delta(config.integrity_window));
    let (shop, id, detail) = (&p.shop, &p.player_id, &latest.detail);
    let words = (
        format!(
            "Shop «{shop}»: the player {id} reported {count} signature or file check failure(s) in the last {en_window} (latest: {detail}). \
             This may be an attack on the network or damaged storage: check the box's network and its SD card or disk. \
             The player keeps playing what it verified."
        ),
        format!(
            "Magasin «{shop}» : le lecteur {id} a signalé {count} échec(s) de vérification de signature ou de fichier au cours des {fr_window} écoulées (dernier : {detail}). \
             Il peut s'agir d'une attaque sur le réseau ou d'un support de stockage endommagé : vérifiez le réseau du boîtier et sa carte SD ou son disque. \
             Le lecteur continue de jouer ce qu'il a vérifié."
        ),
    );
    let detail = json!({"count": count, "latest_kind": latest.kind, "latest_media": latest.media});
    Some((words, detail))
}

fn clock_skew(p: &AlertPlayerFacts, config: &AlertConfig) -> Option<Words> {
    let offset = p.clock_offset_ms?;
    if offset.unsigned_abs() <= config.max_clock_offset_ms.unsigned_abs() {
        return None;
    }
    // The offset is the server's clock minus the player's: positive, the player is behind.
    let secs = format!("{:.1}", offset.unsigned_abs() as f64 / 1000.0);
    let secs_fr = secs.replace('.', ",");
    let (en_side, fr_side) = if offset > 0 {
        ("behind", "de retard")
    } else {
        ("ahead of", "d'avance")
    };
    let (shop, id) = (&p.shop, &p.player_id);
    let words = (
        format!(
            "Shop «{shop}»: the clock of the player {id} is {secs} s {en_side} the server's. \
             Proof of play is corrected, but check that NTP (systemd-timesyncd or chrony) runs on the box."
        ),
        format!(
            "Magasin «{shop}» : l'horloge du lecteur {id} a {secs_fr} s {fr_side} sur celle du serveur. \
             Les preuves de diffusion sont corrigées, mais vérifiez que NTP (systemd-timesyncd ou chrony) fonctionne sur le boîtier."
        ),
    );
    Some((words, json!({"clock_offset_ms": offset})))
}

fn disk_low(p: &AlertPlayerFacts, config: &AlertConfig) -> Option<Words> {
    let free = p.free_disk_bytes?;
    if free >= config.min_free_disk_bytes {
        return None;
    }
    let mb = free / 1_000_000;
    let (shop, id) = (&p.shop, &p.player_id);
    let words = (
        format!(
            "Shop «{shop}»: only {mb} MB free on the player {id}. \
             New versions may fail to download: free space on the box or give it a larger card."
        ),
        format!(
            "Magasin «{shop}» : il ne reste que {mb} Mo d'espace libre sur le lecteur {id}. \
             Les nouvelles versions risquent de ne pas se télécharger : libérez de la place sur le boîtier ou installez une carte plus grande."
        ),
    );
    Some((words, json!({"free_disk_bytes": free})))
}

/// A mirror that failed [`crate::mirror::FAILING_AFTER_FAILURES`] times without
/// catching up (`crate::mirror::is_failing`): about the publisher's side, so it
/// names no player or shop; its subject is the mirror. Gone once the queue is
/// empty, then resolved after the hold-down like the others.
fn mirror_failing(m: &MirrorRow, head_version: u64) -> Option<Condition> {
    if !crate::mirror::is_failing(m, head_version) {
        return None;
    }
    let behind = head_version.saturating_sub(m.mirrored_version).max(m.queue_len);
    let failures = m.failures_since_caught_up;
    let error = m.last_error.as_deref().unwrap_or("unknown");
    let (name, endpoint, bucket) = (&m.name, &m.endpoint, &m.bucket);
    let text_en = format!(
        "Mirror «{name}» ({endpoint}, bucket {bucket}) is {behind} version(s) behind: {failures} copies failed in a row (last error: {error}). \
         Players fetch from the other sources meanwhile; check that the storage is up and that its key may still write to the bucket."
    );
    let text_fr = format!(
        "Le miroir «{name}» ({endpoint}, bucket {bucket}) a {behind} version(s) de retard : {failures} copies ont échoué d'affilée (dernière erreur : {error}). \
         Les lecteurs se servent aux autres sources en attendant ; vérifiez que le stockage fonctionne et que sa clé a toujours le droit d'écrire dans le bucket."
    );
    Some(Condition {
        kind: AlertKind::MirrorFailing,
        player_id: String::new(),
        shop: String::new(),
        subject: name.clone(),
        text_en,
        text_fr,
        detail: json!({
            "mirror": name,
            "mirrored_version": m.mirrored_version,
            "head_version": head_version,
            "queue_len": m.queue_len,
            "failures": failures,
            "last_error": m.last_error,
        }),
        onset: Duration::ZERO,
    })
}

/// The head past three quarters of its validity: `serve` re-signs at half
/// (`crate::resign`), so re-signing has failed or is not running. About the
/// publisher: no player or shop; its subject is the head's version.
fn resign_overdue(head: &Manifest, now: DateTime<Utc>) -> Option<Condition> {
    let (published, expires) = (head.published_at.0, head.expires_at.0);
    if now - published < (expires - published) * 3 / 4 {
        return None;
    }
    let version = head.version.get();
    let (left_en, left_fr) = span(expires - now);
    let (when_en, when_fr) = if now < expires {
        (format!("expires in {left_en}"), format!("expire dans {left_fr}"))
    } else {
        ("has expired".to_string(), "a expiré".to_string())
    };
    let text_en = format!(
        "Version {version} {when_en} and has not been re-signed (serve re-signs at half of its validity): players go stale when it expires. \
         Run `skycast-publisher resign --data DIR` to re-sign it now and see what fails, and check serve's log."
    );
    let text_fr = format!(
        "La version {version} {when_fr} et n'a pas été re-signée (serve la re-signe à la moitié de sa validité) : les lecteurs seront périmés à son expiration. \
         Lancez `skycast-publisher resign --data DIR` pour la re-signer maintenant et voir ce qui échoue, et consultez le journal de serve."
    );
    Some(Condition {
        kind: AlertKind::ResignOverdue,
        player_id: String::new(),
        shop: String::new(),
        subject: format!("v{version}"),
        text_en,
        text_fr,
        detail: json!({
            "version": version,
            "published_at": published.to_rfc3339(),
            "expires_at": expires.to_rfc3339(),
        }),
        onset: Duration::ZERO,
    })
}

/// What one sweep changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub opened: Vec<i64>,
    pub resolved: Vec<i64>,
    /// Open after the sweep.
    pub open: usize,
}

/// Applies conditions to the `alerts` table, sweep after sweep. Keeps, in
/// memory, since when each condition with an onset has held.
#[derive(Debug)]
pub struct Sweeper {
    listening_since: DateTime<Utc>,
    pending: HashMap<AlertKey, DateTime<Utc>>,
    missed_ads_checked: Option<DateTime<Utc>>,
}

impl Sweeper {
    /// `listening_since`: when this server started taking reports.
    pub fn new(listening_since: DateTime<Utc>) -> Sweeper {
        Sweeper {
            listening_since,
            pending: HashMap::new(),
            missed_ads_checked: None,
        }
    }

    /// Reads the facts, evaluates them at `now` and applies the conditions.
    /// `manifest` is the head version's, verified (`None` when there is none).
    pub fn sweep(
        &mut self,
        db: &Db,
        head: &Head,
        manifest: Option<&Manifest>,
        now: DateTime<Utc>,
        config: &AlertConfig,
    ) -> Result<SweepReport, DbError> {
        let check_missed = self
            .missed_ads_checked
            .is_none_or(|t| now - t >= delta(config.missed_ad_every));
        let plays = match (check_missed, manifest) {
            (true, Some(manifest)) => {
                self.missed_ads_checked = Some(now);
                // Shops with something planned in the look-back, and plays from a
                // while before it (a `boundary` message waits for the track then).
                let from = now - delta(config.missed_ad_lookback);
                let shops: Vec<&str> = manifest
                    .program
                    .shops
                    .keys()
                    .map(String::as_str)
                    .filter(|shop| planned_messages(manifest, shop, from, now).is_ok_and(|p| !p.is_empty()))
                    .collect();
                if shops.is_empty() {
                    Some(Vec::new())
                } else {
                    Some(db.plays_started_since(from - TimeDelta::minutes(30), &shops)?)
                }
            }
            _ => None,
        };
        let published = manifest
            .map(|m| m.published_at.0)
            .or_else(|| head.published_at.as_deref().and_then(parse_instant));
        let facts = Facts {
            head_version: head.version,
            head_published_at: published,
            manifest,
            players: db.alert_player_facts()?,
            plays,
            integrity: db.integrity_events_since(now - delta(config.integrity_window))?,
            listening_since: Some(self.listening_since),
            mirrors: db.mirrors()?,
        };
        let conditions = evaluate(&facts, now, config);
        self.apply(db, conditions, now, config)
    }

    /// Opens the conditions that are new (once they held for their onset),
    /// re-arms the open alerts whose condition is back during the hold-down,
    /// starts the hold-down of those whose condition is gone and resolves them
    /// after it. Past incidents resolve after their time or when acknowledged.
    pub fn apply(
        &mut self,
        db: &Db,
        conditions: Vec<Condition>,
        now: DateTime<Utc>,
        config: &AlertConfig,
    ) -> Result<SweepReport, DbError> {
        let mut report = SweepReport::default();
        let open = db.open_alerts(None)?;
        let open_by_key: HashMap<AlertKey, &AlertRow> = open
            .iter()
            .filter_map(|row| {
                let kind = AlertKind::parse(&row.kind)?;
                Some(((kind, row.player_id.clone(), row.subject.clone()), row))
            })
            .collect();
        let present: HashSet<AlertKey> = conditions.iter().map(Condition::key).collect();
        self.pending.retain(|key, _| present.contains(key));
        for condition in &conditions {
            let key = condition.key();
            if let Some(row) = open_by_key.get(&key) {
                if row.clear_since.is_some() && !condition.kind.is_past_incident() {
                    db.rearm_alert(row.id)?;
                }
                continue;
            }
            if !condition.onset.is_zero() {
                let since = *self.pending.entry(key).or_insert(now);
                if now - since < delta(condition.onset) {
                    continue;
                }
            }
            let detail = condition.detail.to_string();
            let new = NewAlert {
                kind: condition.kind.as_str(),
                player_id: &condition.player_id,
                subject: &condition.subject,
                shop: &condition.shop,
                text_en: &condition.text_en,
                text_fr: &condition.text_fr,
                detail: &detail,
                once: condition.kind.is_past_incident(),
            };
            if let AlertOpening::Opened(id) = db.open_alert(&new, now)? {
                tracing::info!(
                    alert_id = id,
                    kind = condition.kind.as_str(),
                    player = %condition.player_id,
                    shop = %condition.shop,
                    "alert opened: {}",
                    condition.text_en
                );
                report.opened.push(id);
            }
        }
        for ((kind, _, _), row) in &open_by_key {
            let resolve = if kind.is_past_incident() {
                let old = parse_instant(&row.opened_at)
                    .is_none_or(|t| now - t >= delta(config.missed_ad_resolve_after));
                old || row.acknowledged_by.is_some()
            } else if present.contains(&(*kind, row.player_id.clone(), row.subject.clone())) {
                false
            } else {
                match row.clear_since.as_deref() {
                    None => {
                        db.mark_alert_clear(row.id, now)?;
                        config.hold_down.is_zero()
                    }
                    Some(since) => parse_instant(since).is_none_or(|t| now - t >= delta(config.hold_down)),
                }
            };
            if resolve && db.resolve_alert(row.id, now)? {
                tracing::info!(
                    alert_id = row.id,
                    kind = row.kind.as_str(),
                    player = %row.player_id,
                    shop = %row.shop,
                    "alert resolved"
                );
                report.resolved.push(row.id);
            }
        }
        report.open = (open.len() + report.opened.len()).saturating_sub(report.resolved.len());
        Ok(report)
    }
}

/// The sweep `serve` runs every [`AlertConfig::sweep_every`]: [`SweepTask::tick`]
/// sweeps once on a blocking thread.
pub struct SweepTask {
    head: watch::Receiver<Head>,
    state: Arc<Mutex<TaskState>>,
}

struct TaskState {
    data: DataDir,
    db: Db,
    sweeper: Sweeper,
    config: AlertConfig,
    /// The head manifest read for this version (`None` inside: none, or unreadable).
    manifest: Option<(u64, Option<Arc<Manifest>>)>,
}

impl TaskState {
    fn tick(&mut self, head: &Head, now: DateTime<Utc>) -> Result<SweepReport> {
        if self.manifest.as_ref().is_none_or(|(v, _)| *v != head.version) {
            // Logged there when unreadable: hours and planned ads then go unchecked.
            self.manifest = Some((head.version, super::manifest_of_version(&self.data, head.version)));
        }
        let manifest = self.manifest.as_ref().and_then(|(_, m)| m.as_deref());
        Ok(self.sweeper.sweep(&self.db, head, manifest, now, &self.config)?)
    }
}

impl SweepTask {
    /// `head` follows the announced head (`HeadTracker::subscribe`).
    pub fn new(
        data: DataDir,
        head: watch::Receiver<Head>,
        config: AlertConfig,
        now: DateTime<Utc>,
    ) -> Result<SweepTask> {
        let db = data.db()?;
        Ok(SweepTask {
            head,
            state: Arc::new(Mutex::new(TaskState {
                data,
                db,
                sweeper: Sweeper::new(now),
                config,
                manifest: None,
            })),
        })
    }

    /// One sweep at the current time; failures are logged and the next tick tries again.
    pub fn tick(&self) -> impl Future<Output = ()> + Send + 'static {
        let head = self.head.borrow().clone();
        let state = self.state.clone();
        async move {
            let started = std::time::Instant::now();
            let done = tokio::task::spawn_blocking(move || {
                // A panic mid-sweep leaves nothing half-applied: every change is one statement or transaction.
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                state.tick(&head, Utc::now())
            })
            .await;
            match done {
                Ok(Ok(report)) => tracing::debug!(
                    opened = report.opened.len(),
                    resolved = report.resolved.len(),
                    open = report.open,
                    took_ms = started.elapsed().as_millis() as u64,
                    "alerts swept"
                ),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "alerts: sweep failed; trying again at the next tick")
                }
                Err(e) => {
                    tracing::error!(error = %e, "alerts: the sweep panicked; trying again at the next tick")
                }
            }
        }
    }
}

/// Open alerts of every player or of one, oldest first, as the dashboard shows them.
pub fn open_alerts(db: &Db, player_id: Option<&str>) -> Result<Vec<AlertView>> {
    Ok(db
        .open_alerts(player_id)?
        .into_iter()
        .filter_map(AlertView::from_row)
        .collect())
}

/// Open alerts, or with `all` the last `limit` alerts open or resolved (newest first).
pub fn list(db: &Db, all: bool, limit: usize) -> Result<Vec<AlertView>> {
    if all {
        Ok(db
            .alert_history(limit)?
            .into_iter()
            .filter_map(AlertView::from_row)
            .collect())
    } else {
        open_alerts(db, None)
    }
}

/// Records that `by` acknowledged alert `id`. A missed ad, a past incident,
/// resolves with it; other alerts stay open until their condition clears.
pub fn acknowledge(db: &Db, id: i64, by: &str, now: DateTime<Utc>) -> Result<AlertView> {
    let by = by.trim();
    if by.is_empty() {
        return Err(PublisherError::BadRequest(
            "say who acknowledges the alert: give a name with --by".into(),
        ));
    }
    let not_found = || {
        PublisherError::NotFound(format!(
            "alert {id}: `skycast-publisher alerts --all` lists the alerts"
        ))
    };
    let row = db.acknowledge_alert(id, by, now)?.ok_or_else(not_found)?;
    if AlertKind::parse(&row.kind).is_some_and(AlertKind::is_past_incident) && row.resolved_at.is_none() {
        db.resolve_alert(id, now)?;
    }
    let row = db.alert(id)?.ok_or_else(not_found)?;
    AlertView::from_row(row).ok_or_else(|| {
        PublisherError::Internal(format!(
            "alert {id} has a kind this publisher does not know: upgrade it"
        ))
    })
}

/// Alerts as lines of text: id, state, opened and resolved times, kind, shop,
/// player, who acknowledged, and the English text.
pub fn render(alerts: &[AlertView]) -> String {
    if alerts.is_empty() {
        return "no alerts\n".to_string();
    }
    let mut out = String::new();
    for a in alerts {
        let state = if a.resolved_at.is_some() {
            "resolved"
        } else {
            "open"
        };
        out.push_str(&format!(
            "#{}\t{state}\topened {}\tresolved {}\t{}\t{}\t{}\tacknowledged by {}\t{}\n",
            a.id,
            a.opened_at,
            a.resolved_at.as_deref().unwrap_or("-"),
            a.kind.as_str(),
            a.shop,
            a.player_id,
            a.acknowledged_by.as_deref().unwrap_or("-"),
            a.text_en
        ));
    }
    out
}

#[cfg(test)]
mod tests;
