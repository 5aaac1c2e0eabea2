//! Receives uploaded files for every page that takes them (media library, ads,
//! urgent messages): each file is streamed chunk by chunk into a fresh temporary
//! file with a byte cap, then kept only if `decode_upload` decodes it as a
//! whole MP3. Memory stays flat whatever the client sends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, Multipart};
use axum::handler::Handler;
use axum::routing::{post, MethodRouter};
use axum::Router;
use skycast_schema::MediaKind;
use skycast_web::Lang;
use tokio::io::AsyncWriteExt;

use super::{Ctx, WebState};
use crate::error::{PublisherError, Result};
use crate::workspace::{decode_upload, sanitize_file_name, LibraryMedia};

/// Files one upload request may carry.
pub(super) const MAX_FILES: usize = 50;
/// How many files of the largest allowed size one upload may carry in total.
const MAX_TOTAL_FILES_OF_MAX_SIZE: u64 = 4;

/// Text fields one upload request may carry (kind, shops, message...).
pub(super) const MAX_TEXT_FIELDS: usize = 100;
/// Bytes one text field may hold.
pub(super) const MAX_TEXT_FIELD_BYTES: usize = 16 * 1024;

/// What an upload request brought.
#[derive(Debug, Default)]
pub(super) struct UploadOutcome {
    /// Files that decoded and are in the library now (or already were: same content).
    pub stored: Vec<LibraryMedia>,
    /// Files refused, as (file name as a label, why), in the order sent. Nothing of
    /// them was kept.
    pub refused: Vec<(String, String)>,
    /// The form's text fields (a field sent twice: its values joined by commas).
    pub fields: BTreeMap<String, String>,
}

impl UploadOutcome {
    /// A message listing what was stored and, each with its reason, what was
    /// refused: `Ok` when every file was stored, a `BadRequest` (shown in red)
    /// when any was refused or none was sent.
    pub fn summary(&self, lang: Lang) -> Result<String> {
        let text = |key: &str| skycast_web::text(lang, key);
        if self.stored.is_empty() && self.refused.is_empty() {
            return Err(PublisherError::BadRequest(text("media.upload_none")));
        }
        let mut parts = Vec::new();
        if !self.stored.is_empty() {
            let names: Vec<String> = self
                .stored
                .iter()
                .map(|m| format!("{} ({})", m.title, m.file_name))
                .collect();
            parts.push(format!(
                "{} ({}): {}",
                text("media.upload_stored"),
                self.stored.len(),
                names.join(", ")
            ));
        }
        if !self.refused.is_empty() {
            let why: Vec<String> = self
                .refused
                .iter()
                .map(|(name, reason)| format!("{name}: {reason}"))
                .collect();
            parts.push(format!(
                "{} ({}): {}",
                text("media.upload_refused"),
                self.refused.len(),
                why.join(" · ")
            ));
        }
        let message = parts.join(". ");
        if self.refused.is_empty() {
            Ok(message)
        } else {
            Err(PublisherError::BadRequest(message))
        }
    }
}

/// A POST route that takes uploads: lifts the form body limit for this route only;
/// [`receive_uploads`] enforces `max_upload_bytes` per file while streaming.
pub(super) fn upload_route<H, T>(handler: H) -> MethodRouter<Arc<WebState>>
where
    H: Handler<T, Arc<WebState>>,
    T: 'static,
{
    post(handler).layer(DefaultBodyLimit::disable())
}

pub(super) fn routes() -> Router<Arc<WebState>> {
    // The pages that take uploads (media, ads, urgent) route them with `upload_route`.
    Router::new()
}

/// The temporary files of one request, removed when the request ends however it
/// ends (refused, failed, client gone): `record_upload` moves the good ones away first.
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an upload's temporary file")
                }
            }
        }
    }
}

fn malformed(e: MultipartError) -> PublisherError {
    PublisherError::BadRequest(format!(
        "the upload was cut off or is not a valid multipart form ({e}): send the files again"
    ))
}

/// Kinds a form's `kind` field may choose; `urgent` only comes from the page that
/// sends urgent messages (its `kind_default`).
fn kind_from_field(text: &str) -> Result<MediaKind> {
    match text.trim() {
        "music" => Ok(MediaKind::Music),
        "ad" => Ok(MediaKind::Ad),
        "announcement" => Ok(MediaKind::Announcement),
        other => Err(PublisherError::BadRequest(format!(
            "kind `{other}` is not one of music, ad or announcement: pick one in the list"
        ))),
    }
}

/// Why a file was refused, for the person who sent it.
fn refusal_reason(e: &PublisherError) -> String {
    match e {
        PublisherError::NotMp3 { reason, .. } => format!("not a playable MP3: {reason}"),
        other => other.public_message(),
    }
}

/// Reads a multipart upload: every part with a file name is a file, streamed to
/// its own temporary file in `uploads_tmp_dir()` (a random name, never the
/// client's); every other part is a text field. A file over
/// `state.max_upload_bytes` stops the reading at once and fails the whole request
/// with `UploadTooLarge` (413), keeping nothing. After the body is read, each file
/// is ingested with the form's `kind` (music, ad, announcement) or `kind_default`;
/// files that do not decode are listed in `refused` with the reason.
pub(super) async fn receive_uploads(
    state: &Arc<WebState>,
    ctx: &Ctx,
    mut multipart: Multipart,
    kind_default: MediaKind,
) -> Result<UploadOutcome> {
    let mut temps = TempFiles(Vec::new());
    // (temporary file, the client's file name)
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut text_fields = 0usize;
    let max = state.max_upload_bytes;
    // Several files at once may hold a few times one file's limit, not 50 times:
    // temporary files sit on the data disk until the request ends.
    let max_total = max.saturating_mul(MAX_TOTAL_FILES_OF_MAX_SIZE);
    let mut total: u64 = 0;

    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_string();
        if let Some(file_name) = field.file_name().map(str::to_string) {
            if files.len() >= MAX_FILES {
                return Err(PublisherError::BadRequest(format!(
                    "at most {MAX_FILES} files per upload: send the others in another upload; nothing was stored"
                )));
            }
            let (path, file) = state.with_workspace(|ws| ws.new_upload_file()).await?;
            temps.0.push(path.clone());
            let mut file = tokio::fs::File::from_std(file);
            let mut size: u64 = 0;
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                size += chunk.len() as u64;
                total += chunk.len() as u64;
                if total > max_total {
                    tracing::warn!(
                        user = %ctx.username(),
                        received_bytes = total,
                        max_bytes = max_total,
                        "upload refused: the files together are over the limit"
                    );
                    return Err(PublisherError::BadRequest(format!(
                        "the files of one upload may hold {max_total} bytes together: send them in several uploads; nothing was stored"
                    )));
                }
                if size > max {
                    // Stop here: the rest of the body is never read, and `temps`
                    // removes what was written.
                    tracing::warn!(
                        user = %ctx.username(),
                        file = %sanitize_file_name(&file_name),
                        received_bytes = size,
                        max_bytes = max,
                        "upload refused: over the size limit"
                    );
                    return Err(PublisherError::UploadTooLarge {
                        name: sanitize_file_name(&file_name),
                        max_bytes: max,
                    });
                }
                file.write_all(&chunk)
                    .await
                    .map_err(PublisherError::io("write", &path))?;
            }
            // Tokio writes in the background: flush so a failed write is seen here.
            file.flush().await.map_err(PublisherError::io("write", &path))?;
            drop(file);
            if file_name.is_empty() && size == 0 {
                // A file input left empty: browsers still send a nameless, empty part.
                continue;
            }
            files.push((path, file_name));
        } else {
            text_fields += 1;
            if text_fields > MAX_TEXT_FIELDS {
                return Err(PublisherError::BadRequest(format!(
                    "the form has more than {MAX_TEXT_FIELDS} fields: reload the page and send it again"
                )));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                if bytes.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
                    return Err(PublisherError::BadRequest(format!(
                        "form field `{}` is over {MAX_TEXT_FIELD_BYTES} bytes: shorten it",
                        sanitize_file_name(&name)
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(bytes).map_err(|_| {
                PublisherError::BadRequest(format!(
                    "form field `{}` is not UTF-8 text",
                    sanitize_file_name(&name)
                ))
            })?;
            fields
                .entry(name)
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert(value);
        }
    }

    let kind = match fields.get("kind") {
        Some(text) => kind_from_field(text)?,
        None => kind_default,
    };
    let mut outcome = UploadOutcome {
        fields,
        ..UploadOutcome::default()
    };
    let now = state.now();
    for (path, file_name) in files {
        let label = sanitize_file_name(&file_name);
        let by = ctx.username().to_string();
        let (temp, name) = (path.clone(), file_name.clone());
        // Decoding takes a while: it runs without the database, which every other
        // page needs; only the short bookkeeping holds it.
        let decoded = tokio::task::spawn_blocking(move || decode_upload(&temp, &name))
            .await
            .map_err(|e| PublisherError::Internal(e.to_string()))?;
        let result = match decoded {
            Ok(decoded) => {
                state
                    .with_workspace(move |ws| ws.record_upload(&decoded, kind, &by, now))
                    .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(media) => {
                tracing::info!(
                    user = %ctx.username(),
                    file = %label,
                    media = %media.id,
                    size_bytes = media.size,
                    duration_ms = media.duration_ms,
                    "upload stored"
                );
                outcome.stored.push(media);
            }
            Err(e) if e.status().is_client_error() => {
                tracing::warn!(user = %ctx.username(), file = %label, reason = %e, "upload refused");
                outcome.refused.push((label, refusal_reason(&e)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(outcome)
}
