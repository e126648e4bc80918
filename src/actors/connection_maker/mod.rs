//! The `ConnectionMaker` actor: owns the targets and dials them.

pub mod state;
