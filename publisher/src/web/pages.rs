//! The pages of each role's job, one module per area; each adds its routes here.

use std::sync::Arc;

use axum::Router;

use super::WebState;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
}
