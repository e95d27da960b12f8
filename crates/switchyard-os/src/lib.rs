//! switchyard-os — what switchyard needs from Linux, and the only crate of switchyard
//! with `unsafe` code besides the test helpers (all of it in the TAP code).
//!
//! * [`port`] — the [`port::Port`] trait (receive a batch, send a frame, an fd to
//!   poll) and TAP devices opened inside an endpoint's namespace
//!   ([`port::tap::TapPort`]: `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE`).
//! * [`netns`] — named network namespaces, kept the way `ip netns` keeps them, and
//!   running code inside one on a helper thread.
//! * [`netlink`] — a small synchronous rtnetlink client: links, addresses, routes and
//!   neighbours, what `ip` does, without running `ip`.
//!
//! Every `unsafe` block carries a `// SAFETY:` line saying why it is sound.

pub mod netlink;
pub mod netns;
pub mod port;
