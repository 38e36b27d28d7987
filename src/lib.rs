//! paude: a rootless sandbox launcher built on bubblewrap.
//!
//! The pipeline runs one way, one module per arrow:
//!
//! ```text
//! argv ─cli─▶ Request
//! Request ─manifest::load─▶ Manifest
//! Manifest.packages ─packages::resolve─▶ Closure
//! Closure + fsEntries ─store::key─▶ VenvKey
//! VenvKey ─store::acquire─▶ Rootfs (held by a shared lock)
//! Manifest + Rootfs + Workspace + host facts ─sandbox::plan─▶ Plan
//! Plan ─sandbox::bwrap::render─▶ argv ─sandbox::exec─▶ bwrap
//! ```
//!
//! Everything up to `render` is data in, data out; the host is touched only at the edges
//! (`host`, the workspace, the package database, `store`, and the single exec site).
//! Beside the pipeline, `launch` caches the two stages a repeated launch would otherwise
//! redo (the manifest's evaluation, and the closure with its key). `sys` holds the crate's only unsafe
//! code: the system calls nothing safe wraps.

pub mod cli;
pub mod commands;
pub mod host;
pub mod image;
pub mod launch;
pub mod manifest;
pub mod packages;
pub mod rootpath;
pub mod sandbox;
pub mod store;
pub mod sys;
pub mod text;
