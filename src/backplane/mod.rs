//! The backplane: several pollchat instances as one chat through Redis pub/sub. For now only
//! its RESP codec, shared with the load generator's Redis mode.

pub mod resp;
