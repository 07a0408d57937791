//! What handlers share to read a request: strict JSON bodies and path parameters.

use axum::body::Bytes;
use flightdeck_protocol::realtime::validate_task_id;
use flightdeck_protocol::validate::parse_strict;

use crate::error::AppError;

/// Parses a JSON body strictly; problems come back as a 400 naming each field.
pub fn parse_body<T>(body: &Bytes) -> Result<T, AppError>
where
    T: serde::de::DeserializeOwned + schemars::JsonSchema + 'static,
{
    let text = std::str::from_utf8(body).map_err(|_| AppError::field("$", "body is not UTF-8"))?;
    Ok(parse_strict::<T>(text)?)
}

/// A task id in a path; a malformed one is a 404, like an unknown one.
pub fn task_id_param(id: &str) -> Result<(), AppError> {
    validate_task_id(id).map_err(|_| AppError::not_found())
}
