//! One module per command group.
pub mod bench;
pub mod deploy;
pub mod weights;
