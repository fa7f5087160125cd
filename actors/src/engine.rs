//! stub
pub mod replies;
