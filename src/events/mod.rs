//! Genesys Cloud user events: subscribing Genesys to them (`register`, for the admin route and the
//! `register-webhook` command) and what the AWS side of the EventBridge route needs (`aws_side`).

pub mod register;

pub use register::{Call, Outcome, RegisterError, Registration, aws_side, register, remove, show};
