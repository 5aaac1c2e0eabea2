//! `serve`'s recurring jobs on tokio-cron-scheduler (the scheduler the design
//! names): the retention purge and re-signing each run on a cron schedule (seconds
//! first) until `serve` stops.

use std::future::Future;

use tokio::sync::watch;
use tokio_cron_scheduler::{Job, JobScheduler};

/// Runs `job` on `schedule` until `stop` turns true or its sender is gone. A
/// schedule that cannot start is logged with `what` and `if_not` (what to do
/// instead); `serve` goes on without it.
pub(crate) async fn run_on_schedule<F, Fut>(
    what: &str,
    if_not: &str,
    schedule: &str,
    job: F,
    mut stop: watch::Receiver<bool>,
) where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let scheduled = async {
        let scheduler = JobScheduler::new().await?;
        scheduler
            .add(Job::new_async(schedule, move |_id, _scheduler| Box::pin(job()))?)
            .await?;
        scheduler.start().await?;
        Ok::<_, tokio_cron_scheduler::JobSchedulerError>(scheduler)
    };
    let mut scheduler = match scheduled.await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, schedule, "cannot schedule {what}: {if_not}");
            None
        }
    };
    let _ = stop.wait_for(|s| *s).await;
    if let Some(s) = scheduler.as_mut() {
        if let Err(e) = s.shutdown().await {
            tracing::warn!(error = %e, "cannot stop the scheduler of {what}");
        }
    }
}
