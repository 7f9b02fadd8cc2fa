//! `/assets/<name>.<hash>.<ext>`: embedded, content-hashed, cached forever.

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::templates::asset_by_file;

pub async fn get(Path(path): Path<String>) -> Response {
    let Some(asset) = asset_by_file(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut res = asset.body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // The name changes with the content: cache for a year (RFC 8246).
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    res
}
