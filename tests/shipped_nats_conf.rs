//! The shipped deploy/nats/nats.conf, run by the pinned nats-server as the tests run it
//! (`NatsServer::start_shipped`: only the ports and the store directory rewritten): it loads, its
//! users log in with the passwords the environment gives them, and nobody else does.

use oneclick_testkit as support;

use support::nats::{connect_as, NatsServer};

#[tokio::test]
async fn the_shipped_nats_config_admits_its_users_and_refuses_wrong_passwords() {
    let server = NatsServer::start_shipped();
    let users = server.users.clone().expect("shipped users");
    let url = server.url();

    let oneclick = connect_as(&url, "oneclick", &users.oneclick, None).await;
    assert!(
        oneclick.is_ok(),
        "the service user logs in: {:?}",
        oneclick.err()
    );
    let gateway = connect_as(&url, "gateway", &users.gateway, Some("_INBOX.gateway")).await;
    assert!(gateway.is_ok(), "the gateway logs in: {:?}", gateway.err());
    let merchant = connect_as(
        &url,
        "merchant_452739",
        &users.merchant_452739,
        Some("_INBOX.merchant_452739"),
    )
    .await;
    assert!(
        merchant.is_ok(),
        "the example merchant logs in: {:?}",
        merchant.err()
    );

    let wrong = connect_as(&url, "oneclick", "not-the-password", None).await;
    assert!(wrong.is_err(), "a wrong password is refused");
    let anonymous = async_nats::ConnectOptions::new().connect(&url);
    let anonymous = tokio::time::timeout(std::time::Duration::from_secs(2), anonymous).await;
    assert!(
        !matches!(anonymous, Ok(Ok(_))),
        "a client without credentials is refused"
    );
}
