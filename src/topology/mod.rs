//! `topology` — from a config file to running namespaces.
//!
//! [`config`] turns TOML into a validated [`config::Topology`]; [`builder`] makes the
//! same from Rust, through the same validation; [`setup`] creates the
//! namespaces and TAP devices it describes (over netlink, never by running `ip`),
//! records what it made in a state file, and removes it all again — on a clean exit,
//! on a failure half-way through, or later with `switchyard down` after a crash;
//! [`resolv`] writes each namespace's resolv.conf, naming the DNS servers at its
//! networks' gateways; [`parent`] attaches the host interfaces networks name as
//! their `parent` (it makes nothing, so it records nothing).
//! networks' gateways; [`overlay`] opens the tunnels of networks that span hosts.

pub mod builder;
pub mod config;
pub mod edit;
pub mod overlay;
pub mod parent;
pub mod resolv;

pub use builder::{EndpointBuilder, NetworkBuilder, TopologyBuilder};
pub use config::{Endpoint, Interface, Network, Topology};
pub mod setup;

pub use setup::{Deployment, RunDir, SetupError, DEFAULT_RUN_ROOT};
