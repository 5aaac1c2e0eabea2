//! Group commit of reports: one writer thread applies every report waiting at
//! that moment in one transaction, so a fleet's reports share an fsync instead
//! of paying one each (the disk's sync latency, not the CPU, bounded ingest).
//! A report is answered only once its transaction committed, as before.
//!
//! A batch that fails is applied again one report per transaction, so a report
//! the database refuses fails alone.

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{PreparedReport, ReportAnswer};
use crate::db::{Applied, Db};
use crate::error::{PublisherError, Result};

/// Reports applied together at most: bounds a transaction's length (and the
/// wait of the first report in it) when thousands arrive at once.
const MAX_BATCH: usize = 256;

type Answered = Result<(ReportAnswer, Applied)>;

struct Job {
    report: PreparedReport,
    answer: oneshot::Sender<Answered>,
}

/// The queue in front of the writer thread; the thread ends when the queue is dropped.
pub(crate) struct IngestQueue {
    jobs: mpsc::Sender<Job>,
}

impl IngestQueue {
    /// Starts the writer thread on `db`.
    pub(crate) fn start(db: Arc<Db>) -> Result<IngestQueue> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("report-ingest".into())
            .spawn(move || write_batches(&db, &queue))
            .map_err(|e| PublisherError::Internal(format!("cannot start the report writer: {e}")))?;
        Ok(IngestQueue { jobs })
    }

    /// Applies `report` with whatever else is waiting, and answers once committed.
    pub(crate) async fn apply(&self, report: PreparedReport) -> Answered {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Job { report, answer })
            .map_err(|_| PublisherError::Internal("the report writer stopped".into()))?;
        answered
            .await
            .map_err(|_| PublisherError::Internal("the report writer dropped a report".into()))?
    }
}

/// Takes the first waiting report, then every other one already queued (up to
/// [`MAX_BATCH`]), and applies them in one transaction, until the queue closes.
fn write_batches(db: &Db, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let together = db.transaction(|tx| {
            batch
                .iter()
                .map(|job| job.report.apply(tx))
                .collect::<std::result::Result<Vec<_>, _>>()
        });
        match together {
            Ok(answers) => {
                for (job, answer) in batch.into_iter().zip(answers) {
                    // A caller that went away (its request was cancelled) needs no answer.
                    let _ = job.answer.send(Ok(answer));
                }
            }
            Err(e) if batch.len() == 1 => {
                let _ = batch.remove(0).answer.send(Err(e.into()));
            }
            Err(e) => {
                tracing::warn!(report_count = batch.len(), error = %e, "a batch of reports failed: applying them one by one");
                for job in batch {
                    let alone = db
                        .transaction(|tx| job.report.apply(tx))
                        .map_err(PublisherError::from);
                    let _ = job.answer.send(alone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use skycast_schema::report::Report;

    use super::*;
    use crate::db::Player;

    fn player(db: &Db, id: &str) -> Player {
        db.add_player(id, "main", &format!("token-{id}")).unwrap();
        Player {
            id: id.into(),
            shop: "main".into(),
        }
    }

    fn report(outbox: &str) -> Report {
        serde_json::from_value(serde_json::json!({
            "outbox": outbox,
            "active_version": 1,
            "output": "playing",
            "agent_version": "test",
            "uptime_secs": 1,
            "entries": [],
        }))
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_arriving_together_are_each_answered_with_their_own_player_s_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("p.sqlite")).unwrap());
        let players: Vec<Player> = (0..50).map(|i| player(&db, &format!("box-{i}"))).collect();
        let queue = Arc::new(IngestQueue::start(db.clone()).unwrap());
        let now = Utc::now();
        let answers = futures_util::future::join_all(players.iter().map(|p| {
            let queue = queue.clone();
            let prepared = PreparedReport::new(p, 1, report(&format!("outbox-of-{}", p.id)), now);
            async move { queue.apply(prepared).await }
        }))
        .await;
        assert_eq!(answers.len(), 50);
        for answer in answers {
            let (answer, _) = answer.unwrap();
            assert!(answer.commands.is_empty());
        }
        for p in &players {
            let status = db.player_status(&p.id).unwrap().expect("a status row per player");
            assert_eq!(status.outbox, format!("outbox-of-{}", p.id));
        }
    }
}
