//! `GET /api/chat`: the page and its headers. What the page does in a browser is
//! tested end to end in `tests/e2e/`.

use crate::helpers::spawn_app;

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
