//! Validation of evaluated JSON into a typed manifest (to be written).
use super::{Manifest, ManifestError};

/// Turns the JSON a manifest evaluated to into a [`Manifest`].
pub fn validate(_value: &serde_json::Value) -> Result<Manifest, ManifestError> {
    Err(ManifestError::Usage("not yet written".into()))
}
