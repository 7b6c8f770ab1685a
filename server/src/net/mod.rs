//! The client-facing network: the listener and one task per connection.

pub mod connection;
pub mod listener;
pub mod output_limit;
pub mod tls;
