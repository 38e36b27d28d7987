//! The sandbox: what bwrap is told (`plan`), how it is written (`bwrap`), where the workspace
//! is (`workspace`) and what its repository looks like inside (`git`, and `index`, which says
//! whether the sandbox's git index may come back), who the user is inside
//! (`identity`), the filter of its system calls (`seccomp`), the bind sources it holds by
//! descriptor (`pin`), the one place paude hands its process over to bwrap (`exec`), and the
//! process that outlives it (`holder`), with the network helpers it starts (`network`, and
//! `proxy`, the allow-list proxy).

pub mod bwrap;
pub mod exec;
pub mod git;
pub mod holder;
pub mod identity;
pub mod index;
pub mod network;
pub mod pin;
pub mod plan;
pub mod proxy;
pub mod seccomp;
#[cfg(test)]
mod testing;
pub mod workspace;
