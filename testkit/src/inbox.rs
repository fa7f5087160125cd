//! Requests from the inbox the service answers (issue 12): oneclick replies to a gateway subject
//! only under `_INBOX.gateway.`, to `<p>.v1.merchant.<id>.…` only under `_INBOX.merchant_<id>.`,
//! and to the health subject under any `_INBOX.`. A client connected with the right
//! `custom_inbox_prefix` (see [`crate::nats::Stack`]) just calls `request`; a test or scenario
//! that sends every kind of subject from one connection uses [`request_as_caller`], which
//! receives the reply on a fresh inbox under the prefix the subject's caller owns.

use std::time::Duration;

use async_nats::client::{RequestError, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;

/// The inbox prefix (without the trailing dot) the caller named by `subject` must use, or
/// `None` when any inbox will do (health, `$SRV`, anything not a gateway or merchant subject).
pub fn reply_inbox_prefix(subject: &str) -> Option<String> {
    let tokens: Vec<&str> = subject.split('.').collect();
    match tokens.as_slice() {
        [_, "v1", "gw", _, ..] => Some("_INBOX.gateway".to_string()),
        [_, "v1", "merchant", id, _, ..] => Some(format!("_INBOX.merchant_{id}")),
        _ => None,
    }
}

/// A request whose reply comes back on an inbox of the caller `subject` names (see the module
/// header), with `timeout`. Errors as `Client::request` reports them.
pub async fn request_as_caller(
    client: &async_nats::Client,
    subject: String,
    payload: Bytes,
    timeout: Duration,
) -> Result<async_nats::Message, RequestError> {
    let Some(prefix) = reply_inbox_prefix(&subject) else {
        return match tokio::time::timeout(timeout, client.request(subject, payload)).await {
            Ok(r) => r,
            Err(_) => Err(RequestError::new(RequestErrorKind::TimedOut)),
        };
    };
    let inbox = format!("{prefix}.{}", uuid::Uuid::new_v4().simple());
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| RequestError::with_source(RequestErrorKind::Other, e))?;
    client
        .publish_with_reply(subject, inbox, payload)
        .await
        .map_err(|e| RequestError::with_source(RequestErrorKind::Other, e))?;
    let reply = tokio::time::timeout(timeout, replies.next()).await;
    let _ = replies.unsubscribe().await;
    match reply {
        Ok(Some(m)) if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) => {
            Err(RequestError::new(RequestErrorKind::NoResponders))
        }
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(RequestError::new(RequestErrorKind::Other)),
        Err(_) => Err(RequestError::new(RequestErrorKind::TimedOut)),
    }
}

#[cfg(test)]
mod tests {
    use super::reply_inbox_prefix;

    #[test]
    fn each_subject_names_the_inbox_its_caller_owns() {
        assert_eq!(
            reply_inbox_prefix("oneclick.v1.gw.pay").as_deref(),
            Some("_INBOX.gateway")
        );
        assert_eq!(
            reply_inbox_prefix("t1.v1.merchant.452740.token.list").as_deref(),
            Some("_INBOX.merchant_452740")
        );
        assert_eq!(reply_inbox_prefix("oneclick.v1.health"), None);
        assert_eq!(reply_inbox_prefix("$SRV.INFO.oneclick"), None);
    }
}
