//! Supervision's tables: each player's last report, proof of play, player
//! events, commands, and alerts with their transitions (the webhook outbox reads
//! those).

/// The tables of supervision, one migration.
pub(super) const MIGRATION: &str = "
";
