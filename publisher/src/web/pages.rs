//! The pages of each role's job, one module per area, each with its own routes.

use std::sync::Arc;

use axum::Router;

use super::WebState;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .merge(super::media::routes())
        .merge(super::playlists::routes())
        .merge(super::upload::routes())
        .merge(super::planning::routes())
        .merge(super::shops::routes())
        .merge(super::ads::routes())
        .merge(super::urgent::routes())
        .merge(super::publishing::routes())
        .merge(super::admin::routes())
        .merge(super::enrolment::routes())
        .merge(super::history::routes())
        .merge(super::fleet::routes())
        .merge(super::webhooks::routes())
}
