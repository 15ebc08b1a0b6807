//! One module per command group.
pub mod deploy;
pub mod weights;
