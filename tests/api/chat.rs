//! `GET /api/chat` (the page and its headers) and `GET /api/whoami` (who the page
//! lists conversations for). What the page does in a browser is tested end to end
//! in `tests/e2e/`.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

#[tokio::test]
async fn the_chat_page_is_served_with_a_strict_policy() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/api/chat", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let policy = headers["content-security-policy"].to_str().unwrap();
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the policy names a nonce");
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");

    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(html.contains(&format!("<style nonce=\"{nonce}\">")));
}

#[tokio::test]
async fn the_chat_page_answers_get_only() {
    let app = spawn_app().await;
    let response = app
        .send(app.client.post(format!("{}/api/chat", app.address)))
        .await;
    response.assert_error(405, "method_not_allowed");
}

/// `GET /api/whoami` as the page asks it, with `principal` in the Easy Auth header.
async fn whoami(app: &TestApp, principal: Option<&str>) -> Value {
    let mut request = app.client.get(format!("{}/api/whoami", app.address));
    if let Some(principal) = principal {
        request = request.header("X-MS-CLIENT-PRINCIPAL-ID", principal);
    }
    let response = app.send(request).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

#[tokio::test]
async fn whoami_names_the_principal_only_when_easy_auth_is_trusted() {
    let untrusting = spawn_app().await;
    assert_eq!(
        whoami(&untrusting, Some("user-1")).await,
        json!({"customer_id": null})
    );

    let trusting = spawn_app_with(|settings| settings.trust_easy_auth_headers = true).await;
    assert_eq!(
        whoami(&trusting, Some("user-1")).await,
        json!({"customer_id": "user-1"})
    );
    assert_eq!(whoami(&trusting, None).await, json!({"customer_id": null}));
    let response = trusting
        .send(
            trusting
                .client
                .get(format!("{}/api/whoami", trusting.address))
                .header("X-MS-CLIENT-PRINCIPAL-ID", "a/b"),
        )
        .await;
    response.assert_error(400, "invalid_customer_id");
}
