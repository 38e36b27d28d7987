//! dpkg provider (to be written).
