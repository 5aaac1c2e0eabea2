//! `POST /v1/players/<id>/report` (DESIGN §5, §7): a player's status and the
//! outbox entries it has not had acknowledged. The token must be `<id>`'s own
//! (403 otherwise); the body is read up to `MAX_REPORT_BYTES` (413 past it) and
//! must be a `schema::report::Report` (400 naming what is wrong). The answer
//! acknowledges the last entry kept and hands out the commands waiting for the
//! player, each once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use futures_util::StreamExt;
use skycast_schema::report::{Report, MAX_REPORT_BYTES};

use super::players::Admitted;
use super::ProtocolState;
use crate::error::{PublisherError, Result};
use crate::fleet::FleetError;

/// How much of an oversize body is read and thrown away before the 413, so
/// the client is not cut off mid-write (the answer would be lost with it).
const DRAIN_BYTES: usize = 4 * MAX_REPORT_BYTES;
/// How long reading (and draining) a body may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The body if it holds at most `MAX_REPORT_BYTES`; `None` when it is larger
/// (read up to [`DRAIN_BYTES`] and dropped), breaks off or takes too long.
async fn read_bounded(body: Body) -> Option<Vec<u8>> {
    let read = async {
        let mut stream = body.into_data_stream();
        let (mut kept, mut seen) = (Vec::new(), 0usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.ok()?;
            seen = seen.saturating_add(chunk.len());
            if seen <= MAX_REPORT_BYTES {
                kept.extend_from_slice(&chunk);
            } else if seen > DRAIN_BYTES {
                return None;
            }
        }
        (seen <= MAX_REPORT_BYTES).then_some(kept)
    };
    tokio::time::timeout(READ_TIMEOUT, read).await.ok().flatten()
}

pub(super) async fn report(
    State(state): State<Arc<ProtocolState>>,
    Extension(admitted): Extension<Admitted>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let player = admitted.player().clone();
    if player.id != id {
        return Err(FleetError::NotYourPlayer {
            asked: id.chars().take(64).collect(),
            own: player.id,
        }
        .into());
    }
    // The connection is closed after the answer: the client does not send its
    // next request behind a body the server did not read to its end.
    let too_large = || {
        let mut resp = PublisherError::from(FleetError::ReportTooLarge {
            player: player.id.clone(),
            max_bytes: MAX_REPORT_BYTES,
        })
        .into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        return Ok(too_large());
    }
    let Some(bytes) = read_bounded(body).await else {
        return Ok(too_large());
    };
    let report: Report = serde_json::from_slice(&bytes).map_err(|e| FleetError::BadReport {
        player: player.id.clone(),
        reason: e.to_string(),
    })?;
    let (answer, applied) = state.fleet.report(&player, report, Utc::now()).await?;
    crate::metrics::record_report(applied.plays_ended);
    tracing::debug!(player = %player.id, size_bytes = bytes.len(), acked = answer.acked, "report");
    Ok(Json(answer).into_response())
}
