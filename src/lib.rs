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
//! (`host`, `probe`, the package database, `store`, and the single exec site).
//!
//! A launch leaves a record of its result and of every question it asked the host on the way
//! (`probe`, `store::record`); the same launch again asks the questions again and, when every
//! answer is the same, goes from argv straight to the exec: the launch front (`front`), which
//! runs from the program's entry point, before the C library starts, with allocation-free
//! system calls (`bare`).

pub mod bare;
pub mod cli;
pub mod commands;
pub mod front;
pub mod host;
pub mod manifest;
pub mod packages;
pub mod probe;
pub mod rootpath;
pub mod sandbox;
pub mod store;
