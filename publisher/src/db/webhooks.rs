//! Webhooks and their delivery cursors over the alert transitions.

/// The tables of notifications, one migration.
pub(super) const MIGRATION: &str = "
";
