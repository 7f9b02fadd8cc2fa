//! Introspection (the Synapse contract), revocation and UserInfo (S28, S29,
//! S31, S34).

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::json;
use vestibule_domain::oauth2::ClientAuthMethod;

use crate::{
    harness::{body_json, send},
    oauth2_support::{CLIENT_SECRET, Fx, GrantOpts, HS_SECRET, SCOPE, assert_error, basic, str_of},
};

type Case<'a> = (Vec<(&'a str, &'a str)>, Option<String>);

#[tokio::test]
async fn introspection_requires_an_authenticated_caller() {
    let fx = Fx::new().await;
    let public = fx.public_client().await;
    let cases: Vec<Case<'_>> = vec![
        (vec![("token", "mat_x")], None),
        (
            vec![("token", "mat_x")],
            Some("Bearer not-the-secret".to_owned()),
        ),
        (
            vec![("token", "mat_x"), ("client_id", &public.client_id)],
            None,
        ),
    ];
    for (form, auth) in cases {
        let res = fx.post_form("/oauth2/introspect", &form, auth).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
    let res = fx
        .post_form(
            "/oauth2/introspect",
            &[],
            Some(format!("Bearer {HS_SECRET}")),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn active_access_token_has_exactly_the_synapse_fields() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let body = fx.exchange_ok(&client, &g.code).await;
    let at = str_of(&body, "access_token");
    let issued = fx.t.clock.now().timestamp();
    fx.advance(100);

    let res = fx
        .post_form(
            "/oauth2/introspect",
            &[("token", at), ("token_type_hint", "access_token")],
            Some(format!("Bearer {HS_SECRET}")),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let v = body_json(res).await;
    assert_eq!(
        v,
        json!({
            "active": true,
            "scope": SCOPE,
            "client_id": client.client_id,
            "username": g.user.username,
            "sub": g.user.id.to_string(),
            "token_type": "access_token",
            "exp": issued + 300,
            "expires_in": 200,
            "iat": issued,
        })
    );

    // With the header Synapse sends, the device id too.
    let req = Request::post("/oauth2/introspect")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Bearer {HS_SECRET}"))
        .header("X-MAS-Supports-Device-Id", "1")
        .body(Body::from(
            serde_urlencoded::to_string([("token", at)]).unwrap(),
        ))
        .unwrap();
    let v = body_json(send(&fx.app, req).await).await;
    assert_eq!(v["device_id"], "ABCDEFGHIJ");
    assert_eq!(v["username"], g.user.username.as_str());
    assert_eq!(v.as_object().unwrap().len(), 10);

    // The refresh token too.
    let v = fx.introspect(str_of(&body, "refresh_token")).await;
    assert_eq!(
        v,
        json!({
            "active": true,
            "scope": SCOPE,
            "client_id": client.client_id,
            "username": g.user.username,
            "sub": g.user.id.to_string(),
            "token_type": "refresh_token",
            "iat": issued,
        })
    );

    // A confidential client may introspect as well.
    let rs = fx
        .confidential_client(ClientAuthMethod::ClientSecretBasic, &["client_credentials"])
        .await;
    let res = fx
        .post_form(
            "/oauth2/introspect",
            &[("token", at)],
            Some(basic(&rs.client_id, CLIENT_SECRET)),
        )
        .await;
    assert_eq!(body_json(res).await["active"], true);
    fx.cleanup().await;
}

#[tokio::test]
async fn dead_tokens_are_exactly_inactive() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let g = fx.grant_for(&client, None, GrantOpts::default()).await;
        let body = fx.exchange_ok(&client, &g.code).await;
        tokens.push((g, str_of(&body, "access_token").to_owned()));
    }
    let inactive = json!({"active": false});
    // Garbage and a forged checksum.
    let real = tokens[0].1.clone();
    let mut forged = real.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    for t in ["garbage", "mat_abc_def", forged.as_str(), ""] {
        assert_eq!(fx.introspect(t).await, inactive, "{t}");
    }
    // Revoked (through the revocation endpoint).
    let res = fx
        .post_form(
            "/oauth2/revoke",
            &[("token", &tokens[0].1), ("client_id", &client.client_id)],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fx.introspect(&tokens[0].1).await, inactive);
    // Locked user.
    let mut repo = fx.t.state.repos.write().await.unwrap();
    repo.users()
        .lock(&*fx.t.clock, tokens[1].0.user.clone())
        .await
        .unwrap();
    repo.users()
        .deactivate(&*fx.t.clock, tokens[2].0.user.clone())
        .await
        .unwrap();
    repo.save().await.unwrap();
    assert_eq!(fx.introspect(&tokens[1].1).await, inactive, "locked");
    assert_eq!(fx.introspect(&tokens[2].1).await, inactive, "deactivated");
    // Expired.
    assert_eq!(fx.introspect(&tokens[3].1).await["active"], true);
    fx.advance(300);
    assert_eq!(fx.introspect(&tokens[3].1).await, inactive, "expired");
    fx.cleanup().await;
}

#[tokio::test]
async fn a_forged_token_is_inactive_without_touching_the_database() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let body = fx.exchange_ok(&client, &g.code).await;
    let at = str_of(&body, "access_token").to_owned();
    let forged = format!("{}XXXXXX", &at[..at.len() - 6]);
    fx.t.db.storage.close().await;
    assert_eq!(fx.introspect(&forged).await, json!({"active": false}));
    // A real token needs the database, which is gone: 503, not "inactive".
    let res = fx
        .post_form(
            "/oauth2/introspect",
            &[("token", &at)],
            Some(format!("Bearer {HS_SECRET}")),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    fx.cleanup().await;
}

#[tokio::test]
async fn revoking_an_access_token_ends_the_session() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let body = fx.exchange_ok(&client, &g.code).await;
    let (at, rt) = (
        str_of(&body, "access_token"),
        str_of(&body, "refresh_token"),
    );
    let res = fx
        .post_form(
            "/oauth2/revoke",
            &[
                ("token", at),
                ("token_type_hint", "access_token"),
                ("client_id", &client.client_id),
            ],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!fx.is_active(at).await);
    assert!(
        !fx.is_active(rt).await,
        "the refresh token dies with the session"
    );
    let res = fx.refresh(&client, rt).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let mut repo = fx.t.state.repos.read().await.unwrap();
    let session = repo
        .oauth2_sessions()
        .lookup(g.session.id)
        .await
        .unwrap()
        .unwrap();
    repo.cancel().await.unwrap();
    assert!(session.finished_at.is_some());

    // Revoking by refresh token works the same way.
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let body = fx.exchange_ok(&client, &g.code).await;
    let res = fx
        .post_form(
            "/oauth2/revoke",
            &[
                ("token", str_of(&body, "refresh_token")),
                ("client_id", &client.client_id),
            ],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!fx.is_active(str_of(&body, "access_token")).await);
    fx.cleanup().await;
}

#[tokio::test]
async fn revocation_of_another_clients_or_unknown_tokens() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let other = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let body = fx.exchange_ok(&client, &g.code).await;
    let at = str_of(&body, "access_token");
    let res = fx
        .post_form(
            "/oauth2/revoke",
            &[("token", at), ("client_id", &other.client_id)],
            None,
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    assert!(fx.is_active(at).await, "not revoked");
    // Unknown, malformed: 200 (RFC 7009 §2.2).
    let unknown = fx.t.state.token_format.generate(
        vestibule_domain::token_format::TokenType::AccessToken,
        &mut rand::rngs::OsRng,
    );
    for t in [unknown.as_str(), "garbage"] {
        let res = fx
            .post_form(
                "/oauth2/revoke",
                &[("token", t), ("client_id", &client.client_id)],
                None,
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{t}");
    }
    let res = fx
        .post_form("/oauth2/revoke", &[("client_id", &client.client_id)], None)
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn revocation_with_the_database_down_is_a_503() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let body = fx.exchange_ok(&client, &g.code).await;
    fx.t.db.storage.close().await;
    let res = fx
        .post_form(
            "/oauth2/revoke",
            &[
                ("token", str_of(&body, "access_token")),
                ("client_id", &client.client_id),
            ],
            None,
        )
        .await;
    assert_error(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    fx.cleanup().await;
}

async fn userinfo(fx: &Fx, auth: Option<&str>, post: bool) -> axum::response::Response {
    let mut req = if post {
        Request::post("/oauth2/userinfo")
    } else {
        Request::get("/oauth2/userinfo")
    };
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    send(&fx.app, req.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn userinfo_returns_the_email_only_with_the_email_scope() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx
        .grant_for(
            &client,
            None,
            GrantOpts {
                scope: "openid email urn:matrix:client:api:*",
                ..GrantOpts::default()
            },
        )
        .await;
    let body = fx.exchange_ok(&client, &g.code).await;
    let bearer = format!("Bearer {}", str_of(&body, "access_token"));
    for post in [false, true] {
        let res = userinfo(&fx, Some(&bearer), post).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            body_json(res).await,
            json!({
                "sub": g.user.id.to_string(),
                "username": g.user.username,
                "email": format!("{}@example.org", g.user.username),
            })
        );
    }

    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let body = fx.exchange_ok(&client, &g.code).await;
    let res = userinfo(
        &fx,
        Some(&format!("Bearer {}", str_of(&body, "access_token"))),
        false,
    )
    .await;
    assert_eq!(
        body_json(res).await,
        json!({ "sub": g.user.id.to_string(), "username": g.user.username })
    );

    // Bad or missing tokens.
    let res = userinfo(&fx, Some("Bearer mat_nope_nope"), false).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    let res = userinfo(
        &fx,
        Some(&format!("Bearer {}", str_of(&body, "refresh_token"))),
        false,
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a refresh token is no access token"
    );
    let res = userinfo(&fx, None, false).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
    fx.cleanup().await;
}
