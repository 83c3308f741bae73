//! The ticket domain: the records kept (tickets, messages, rejections) and
//! what committing a message means for them.

pub mod model;
