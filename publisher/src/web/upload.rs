//! (stub: the upload pages are being written)

use std::sync::Arc;

use axum::Router;

use super::WebState;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
}
