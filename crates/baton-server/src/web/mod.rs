//! What the HTTP doors share (the API, the console and the agents' door): the extractors that
//! authenticate and check permissions, problem+json, Server-Sent Events from the bus, and
//! ranged artifact downloads. Plumbing, not a door: it imports no door.

pub mod extract;
pub mod problem;
pub mod ranged;
pub mod sse;
