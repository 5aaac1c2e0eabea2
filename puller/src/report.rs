//! The reporter: every `report_interval_secs`, and at once when something changes,
//! `POST /v1/players/<id>/report` with the player's state and the oldest outbox
//! entries (bounded in count and bytes), then drops what the answer acknowledges and
//! runs the commands it carries. A failed report keeps everything for the next tick.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use skycast_schema::report::{
    Entry, EntryBody, EventKind, Report, MAX_ENTRIES_PER_REPORT, MAX_REPORT_BYTES, MAX_TEXT_CHARS,
};

use crate::client::ClientError;
use crate::commands::{parse_answer, run_commands, Actions};
use crate::live::Live;
use crate::local_store::Layout;
use crate::outbox::{self, Outbox, OutboxError};
use crate::sources::Sources;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("the report answer from {url} is invalid: {reason}: check that the server speaks this protocol")]
    Answer { url: String, reason: String },
}

/// Cuts `text` to [`MAX_TEXT_CHARS`] characters.
fn cut(text: &mut String) {
    if let Some((at, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
        text.truncate(at);
    }
}

fn cut_entry(entry: &mut Entry) {
    match &mut entry.body {
        EntryBody::Play(p) => {
            cut(&mut p.title);
            cut(&mut p.source);
        }
        EntryBody::Event(e) => cut(&mut e.detail),
    }
}

/// The JSON body of `report` carrying as many of `entries` (oldest first) as fit
/// in [`MAX_ENTRIES_PER_REPORT`] and [`MAX_REPORT_BYTES`], text fields cut to
/// [`MAX_TEXT_CHARS`]. Returns the body and the number of entries in it.
pub fn bounded_body(mut report: Report, mut entries: Vec<Entry>) -> (Vec<u8>, usize) {
    if let Some(np) = &mut report.now_playing {
        cut(&mut np.title);
    }
    if let Some(e) = &mut report.last_error {
        cut(e);
    }
    entries.truncate(MAX_ENTRIES_PER_REPORT);
    report.entries.clear();
    // Serialising plain structs of strings and numbers cannot fail.
    let base = serde_json::to_vec(&report).unwrap_or_default().len();
    // `"entries":[...]` and the commas between entries.
    // A kilobyte of margin under the server's bound, for whatever it counts differently.
    let mut budget = MAX_REPORT_BYTES.saturating_sub(base + 1024);
    for mut entry in entries {
        cut_entry(&mut entry);
        let size = serde_json::to_vec(&entry).map_or(usize::MAX, |b| b.len() + 1);
        if size > budget {
            break;
        }
        budget -= size;
        report.entries.push(entry);
    }
    let count = report.entries.len();
    (serde_json::to_vec(&report).unwrap_or_default(), count)
}

/// Posts reports for one player; see the module docs.
pub struct Reporter {
    /// Reports go to the server that answers (the one in use first).
    pub sources: Arc<Sources>,
    pub player_id: String,
    pub live: Arc<Live>,
    pub layout: Layout,
    pub interval: Duration,
    pub actions: Arc<dyn Actions>,
}

/// What one report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub size_bytes: usize,
    pub entries: usize,
    /// Entries the answer let go.
    pub acked: usize,
    /// Commands answered with a `command_done`.
    pub commands_done: usize,
    /// More entries were waiting than one report carries.
    pub backlog: bool,
}

impl Reporter {
    /// Reports until the task is dropped. Never returns and never fails: a failure is
    /// logged, recorded for `status`, and the next tick tries again.
    pub async fn run(self) {
        let mut outbox = loop {
            match Outbox::open(&self.layout.state_db()) {
                Ok(o) => break o,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the outbox; reports wait");
                    tokio::time::sleep(self.interval).await;
                }
            }
        };
        loop {
            match self.report_once(&mut outbox).await {
                Ok(sent) => {
                    tracing::debug!(
                        size_bytes = sent.size_bytes,
                        entries = sent.entries,
                        acked = sent.acked,
                        commands_done = sent.commands_done,
                        "report sent"
                    );
                    // Commands done, or a backlog the server takes: the next report goes
                    // out at once (each round makes progress, so this ends).
                    if sent.commands_done > 0 || (sent.backlog && sent.acked > 0) {
                        continue;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(self.interval) => {}
                        () = self.live.report_wanted() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = self.interval.as_millis() as u64,
                        "report failed; its entries are kept"
                    );
                    // No tight loop: the next try waits a whole interval, whatever changes.
                    tokio::time::sleep(self.interval).await;
                }
            }
        }
    }

    /// Sends one report and acts on its answer.
    pub async fn report_once(&self, outbox: &mut Outbox) -> Result<Sent, ReportError> {
        let result = self.exchange(outbox).await;
        let now = self.live.now();
        let network_down = match &result {
            Err(ReportError::Client(e)) => e.is_network(),
            _ => false,
        };
        if self.live.network(!network_down) {
            let (kind, detail) = match &result {
                Err(e) if network_down => (EventKind::NetworkLost, format!("report failed: {e}")),
                _ => (EventKind::NetworkBack, "the server answers again".to_string()),
            };
            outbox.append_event(now, outbox::event(kind, detail))?;
        }
        let error = result.as_ref().err().map(ToString::to_string);
        outbox.record_report(self.live.server_now(), error.as_deref())?;
        result
    }

    async fn exchange(&self, outbox: &mut Outbox) -> Result<Sent, ReportError> {
        let entries = outbox.pending(MAX_ENTRIES_PER_REPORT)?;
        let live = self.live.snapshot();
        let report = Report {
            outbox: outbox.id()?,
            active_version: self.layout.current_version().ok().flatten(),
            fetching: self.live.fetching.get(),
            now_playing: live.now_playing,
            output: live.output,
            last_error: live.last_error,
            clock_offset_ms: live.clock_offset_ms,
            free_disk_bytes: self.layout.free_disk_bytes(),
            audio_clock: live.audio_clock,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.live.uptime_secs(),
            entries: Vec::new(),
        };
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        let (body, sent_entries) = bounded_body(report, entries);
        // An answer can only acknowledge what was sent: entries appended meanwhile stay.
        let sent_top = seqs[..sent_entries].last().copied().unwrap_or(0);
        let size_bytes = body.len();
        let (server, answer) = self.sources.report(&self.player_id, body).await?;
        if let Some(date) = answer.server_date {
            let offset = (date - Utc::now()).num_milliseconds();
            self.live.update(|s| s.clock_offset_ms = Some(offset));
        }
        let parsed = parse_answer(&answer.value).map_err(|reason| ReportError::Answer {
            url: server.url(&skycast_schema::report::report_path(&self.player_id)),
            reason,
        })?;
        let acked = outbox.ack(parsed.acked.min(sent_top))?;
        let commands_done = run_commands(
            outbox,
            parsed.commands,
            self.live.server_now(),
            self.actions.as_ref(),
        )
        .await?;
        Ok(Sent {
            size_bytes,
            entries: sent_entries,
            acked,
            commands_done,
            backlog: sent_entries < seqs.len() || seqs.len() == MAX_ENTRIES_PER_REPORT,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use futures_util::future::BoxFuture;
    use reqwest::StatusCode;
    use skycast_schema::report::{CommandKind, NowPlaying, OutputState, PlayEntry};

    use super::*;
    use crate::commands::Done;
    use crate::live::ClockSetting;
    use crate::test_support::MemoryTransport;

    struct NoActions;

    impl Actions for NoActions {
        fn run(&self, _: CommandKind) -> BoxFuture<'_, Done> {
            Box::pin(async { Done::default() })
        }
    }

    fn reporter(transport: &Arc<MemoryTransport>, dir: &std::path::Path) -> Reporter {
        Reporter {
            sources: Arc::new(Sources::single(MemoryTransport::client(transport))),
            player_id: "main-1".into(),
            live: Live::new(ClockSetting {
                start: None,
                rate: 1.0,
            }),
            layout: Layout::new(dir),
            interval: Duration::from_secs(10),
            actions: Arc::new(NoActions),
        }
    }

    /// A server that keeps every seq it is sent and acknowledges the highest.
    fn acking_server(transport: &MemoryTransport) -> Arc<Mutex<Vec<u64>>> {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let seen = kept.clone();
        transport.set_post_handler(move |_path, body| {
            let report: Report = serde_json::from_slice(body).unwrap();
            let mut seen = seen.lock().unwrap();
            seen.extend(report.entries.iter().map(|e| e.seq));
            let acked = seen.iter().max().copied().unwrap_or(0);
            (StatusCode::OK, format!(r#"{{"acked": {acked}}}"#).into_bytes())
        });
        kept
    }

    fn play(n: u64, outcome: &str) -> EntryBody {
        EntryBody::Play(PlayEntry {
            play_id: format!("{n:032x}"),
            media: "92b2c1ec5fc0acaad64bc63c3b547822839e23b1498b68b3900ee35da216bcb5".into(),
            title: "Four Chords".into(),
            kind: "music".into(),
            source: "daytime".into(),
            version: 7,
            started_at: "2026-12-01T10:00:00.000Z".into(),
            ended_at: (outcome != "playing").then(|| "2026-12-01T10:03:30.000Z".into()),
            outcome: outcome.into(),
        })
    }

    #[tokio::test]
    async fn reports_go_to_the_server_that_answers_the_one_in_use_first() {
        let dir = tempfile::tempdir().unwrap();
        let primary = Arc::new(MemoryTransport::default());
        let backup = Arc::new(MemoryTransport::at("https://backup.invalid"));
        let mut r = reporter(&primary, dir.path());
        r.sources = Arc::new(Sources::with_clients(
            vec![
                MemoryTransport::client(&primary),
                MemoryTransport::client(&backup),
            ],
            Vec::new(),
        ));
        let kept = acking_server(&backup);
        acking_server(&primary);
        let mut outbox = Outbox::open(&dir.path().join("state.sqlite")).unwrap();
        outbox.append(Utc::now(), &play(1, "playing")).unwrap();
        primary.set_down(true);
        r.report_once(&mut outbox).await.unwrap();
        assert_eq!(kept.lock().unwrap().len(), 1, "the backup took the report");
        assert_eq!(outbox.len().unwrap(), 0);

        // The syncs found the backup in use: it is asked first, the primary not at all.
        primary.set_down(false);
        r.sources.set_in_use(Some(1));
        outbox.append(Utc::now(), &play(2, "playing")).unwrap();
        r.report_once(&mut outbox).await.unwrap();
        assert!(primary.posts().is_empty(), "{:?}", primary.posts());
        assert_eq!(backup.posts().len(), 2);
    }

    #[tokio::test]
    async fn entries_survive_a_crash_and_are_acknowledged_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let transport = Arc::new(MemoryTransport::default());
        let r = reporter(&transport, dir.path());
        let now = Utc::now();
        {
            let mut outbox = Outbox::open(&db).unwrap();
            for n in 0..3 {
                outbox.append(now, &play(n, "playing")).unwrap();
            }
            // The server is down: the report fails and keeps everything.
            transport.set_post_handler(|_, _| (StatusCode::SERVICE_UNAVAILABLE, b"{}".to_vec()));
            assert!(r.report_once(&mut outbox).await.is_err());
            assert_eq!(outbox.len().unwrap(), 4, "3 plays and a network_lost event");
        }
        // kill -9, restart: a new outbox handle on the same file.
        let mut outbox = Outbox::open(&db).unwrap();
        let kept = acking_server(&transport);
        let sent = r.report_once(&mut outbox).await.unwrap();
        assert_eq!((sent.entries, sent.acked), (4, 4));
        let sent = r.report_once(&mut outbox).await.unwrap();
        assert_eq!(sent.entries, 1, "only the network_back event is new");
        let kept = kept.lock().unwrap().clone();
        let unique: BTreeSet<u64> = kept.iter().copied().collect();
        assert_eq!(
            kept.len(),
            unique.len(),
            "no entry sent twice after its ack: {kept:?}"
        );
        assert!(outbox.is_empty().unwrap());
        let summary = outbox::summary(&db).unwrap();
        assert!(summary.last_report_at.is_some() && summary.last_report_error.is_none());
    }

    #[tokio::test]
    async fn an_answer_acking_up_to_n_deletes_no_entry_after_n() {
        let dir = tempfile::tempdir().unwrap();
        let transport = Arc::new(MemoryTransport::default());
        let r = reporter(&transport, dir.path());
        let mut outbox = Outbox::open(&dir.path().join("state.sqlite")).unwrap();
        for n in 0..5 {
            outbox.append(Utc::now(), &play(n, "complete")).unwrap();
        }
        transport.set_post_handler(|_, _| (StatusCode::OK, br#"{"acked": 2}"#.to_vec()));
        let sent = r.report_once(&mut outbox).await.unwrap();
        assert_eq!((sent.entries, sent.acked), (5, 2));
        let left: Vec<u64> = outbox.pending(10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(left, [3, 4, 5]);
        // An answer acknowledging more than was sent lets go only of what was sent.
        transport.set_post_handler(|_, _| (StatusCode::OK, br#"{"acked": 99}"#.to_vec()));
        let sent = r.report_once(&mut outbox).await.unwrap();
        assert_eq!(sent.acked, 3);
    }

    #[tokio::test]
    async fn a_report_with_1000_waiting_entries_is_bounded_in_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let transport = Arc::new(MemoryTransport::default());
        let r = reporter(&transport, dir.path());
        let mut outbox = Outbox::open(&dir.path().join("state.sqlite")).unwrap();
        // 4 bytes a character: 200 cut details alone would be 400 KB, over the byte bound.
        let long = "😀".repeat(3 * MAX_TEXT_CHARS);
        for _ in 0..1000 {
            outbox
                .append_event(Utc::now(), outbox::event(EventKind::OutputLost, long.clone()))
                .unwrap();
        }
        let kept = acking_server(&transport);
        let sent = r.report_once(&mut outbox).await.unwrap();
        let (_, body) = transport.posts().pop().unwrap();
        let report: Report = serde_json::from_slice(&body).unwrap();
        println!(
            "report with a full batch: {} bytes, {} entries",
            body.len(),
            report.entries.len()
        );
        assert!(body.len() < MAX_REPORT_BYTES, "{} bytes", body.len());
        assert!(
            report.entries.len() < MAX_ENTRIES_PER_REPORT,
            "the byte bound cut the batch"
        );
        assert!(report.entries.len() > 50, "{}", report.entries.len());
        assert_eq!(sent.entries, report.entries.len());
        assert_eq!(report.entries[0].seq, 1, "oldest first");
        for e in &report.entries {
            let EntryBody::Event(ev) = &e.body else { panic!() };
            assert_eq!(ev.detail.chars().count(), MAX_TEXT_CHARS);
        }
        assert_eq!(outbox.len().unwrap(), 1000 - sent.entries as u64);
        assert_eq!(kept.lock().unwrap().len(), sent.entries);
    }

    #[test]
    fn a_typical_report_is_small() {
        let report = Report {
            outbox: "0123456789abcdef0123456789abcdef".into(),
            active_version: Some(42),
            fetching: None,
            now_playing: Some(NowPlaying {
                media: "92b2c1ec5fc0acaad64bc63c3b547822839e23b1498b68b3900ee35da216bcb5".into(),
                title: "Four Chords".into(),
                kind: "music".into(),
                started_at: "2026-12-01T10:00:00.000Z".into(),
            }),
            output: OutputState::Playing,
            last_error: None,
            clock_offset_ms: Some(-120),
            free_disk_bytes: Some(12_345_678_901),
            audio_clock: Some(skycast_schema::report::AudioClock {
                schedule_offset_ms: -12,
                device_rate_ppm: Some(35),
                throttled: false,
            }),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: 86_400,
            entries: Vec::new(),
        };
        // Ten seconds of a shop: a track that ended, the next one started.
        let entries = vec![
            Entry {
                seq: 101,
                at: "2026-12-01T10:03:30.000Z".into(),
                body: play(1, "complete"),
            },
            Entry {
                seq: 102,
                at: "2026-12-01T10:03:30.000Z".into(),
                body: play(2, "playing"),
            },
        ];
        let (body, n) = bounded_body(report, entries);
        println!("typical report: {} bytes ({n} entries)", body.len());
        assert_eq!(n, 2);
        assert!(body.len() < 4096, "{} bytes", body.len());
    }
}
