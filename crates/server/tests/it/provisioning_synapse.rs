//! Devices on a REAL Synapse: a code exchange with a device scope makes the
//! user and the device exist in Synapse before the token response, the token
//! works on Synapse at once, and revocation makes Synapse refuse it at once
//! (the device is deleted, whatever Synapse's introspection cache says).

use std::{collections::BTreeSet, sync::Arc};

use axum::http::StatusCode;
use tokio::net::TcpListener;
use vestibule_server::{Resources, homeserver::Homeserver};

use crate::{
    harness::TestApp,
    homeserver_support::{SERVER_NAME, Synapse, synapse_venv},
    oauth2_support::{Fx, GrantOpts, str_of},
};

const DEVICE: &str = "ABCDEFGHIJ";

fn devices(synapse: &Synapse, localpart: &str) -> BTreeSet<String> {
    synapse
        .sql(&format!(
            "SELECT device_id FROM devices WHERE user_id = '@{localpart}:{SERVER_NAME}' AND NOT hidden"
        ))
        .into_iter()
        .collect()
}

async fn whoami(synapse: &Synapse, token: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/_matrix/client/v3/account/whoami",
            synapse.port
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("whoami");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

#[tokio::test]
async fn code_exchange_provisions_user_and_device_on_real_synapse() {
    let Some(venv) = synapse_venv("code_exchange_provisions_user_and_device_on_real_synapse")
    else {
        return;
    };
    // Our port first (Synapse's config points at it), Synapse second, then
    // our state with Synapse's client and secret, served on that port.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let port = listener.local_addr().expect("address").port();
    let synapse = Synapse::start(&venv, port).await;
    let db = vestibule_storage_sql::testing::TestDatabase::sqlite()
        .await
        .expect("sqlite");
    let secret = synapse.secret.clone();
    let mut t = TestApp::with(db, &format!("http://127.0.0.1:{port}/"), |c| {
        SERVER_NAME.clone_into(&mut c.matrix.homeserver);
        c.matrix.secret = Some(secret.as_str().into());
    });
    let hs: Arc<dyn Homeserver> = Arc::new(synapse.client());
    t.state.homeserver = hs.clone();
    let router = t.router(&Resources::all(), None);
    let served = router.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, served).await.expect("serving");
    });
    let fx = Fx { t, app: router };

    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let localpart = g.user.username.clone();
    assert!(
        hs.query_user(&localpart).await.is_err(),
        "unknown to Synapse"
    );

    let body = fx.exchange_ok(&client, &g.code).await;
    let found = hs
        .query_user(&localpart)
        .await
        .expect("query_user finds the user");
    assert_eq!(found.user_id, format!("@{localpart}:{SERVER_NAME}"));
    assert_eq!(
        devices(&synapse, &localpart),
        BTreeSet::from([DEVICE.to_owned()])
    );
    assert_eq!(
        synapse.sql(&format!(
            "SELECT display_name FROM devices WHERE user_id = '@{localpart}:{SERVER_NAME}' AND device_id = '{DEVICE}'"
        )),
        ["Test client"]
    );
    let emails = synapse.sql(&format!(
        "SELECT address FROM user_threepids WHERE user_id = '@{localpart}:{SERVER_NAME}'"
    ));
    assert_eq!(emails, [format!("{localpart}@example.org")]);

    // The token works on Synapse right away, for that device.
    let at = str_of(&body, "access_token").to_owned();
    let (status, me) = whoami(&synapse, &at).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], format!("@{localpart}:{SERVER_NAME}"));
    assert_eq!(me["device_id"], DEVICE);

    // Logout: the device goes, and Synapse refuses the (cached) token now.
    let res = fx
        .post_form(
            "/oauth2/revoke",
            &[("token", &at), ("client_id", &client.client_id)],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(devices(&synapse, &localpart).is_empty());
    let (status, body) = whoami(&synapse, &at).await;
    assert_eq!(status, 401, "{body}");
    server.abort();
    drop(synapse);
    fx.cleanup().await;
}
