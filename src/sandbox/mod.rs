//! The sandbox: what bwrap is told (`plan`), how it is written (`bwrap`), where the workspace
//! is (`workspace`), who the user is inside (`identity`), and the one place paude hands its
//! process over to bwrap (`exec`).

pub mod bwrap;
pub mod exec;
pub mod identity;
pub mod plan;
pub mod seccomp;
pub mod workspace;
