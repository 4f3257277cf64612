//! The sandbox's test controls (`http`): routes only, served under a manual clock. The adapter
//! itself is `payments::sandbox`.

pub mod http;
