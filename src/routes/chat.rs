//! `GET /api/chat`: the chat page, one self-contained HTML file embedded in the
//! binary. It talks to the service through relative `/api/...` URLs only.

use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::Reply;

/// The page. Its inline `<script>` and `<style>` carry [`NONCE_SLOT`] until served.
const PAGE: &str = include_str!("chat.html");

/// Replaced by a fresh nonce in every response, so that the Content-Security-Policy
/// runs the page's own script and style and nothing else.
const NONCE_SLOT: &str = "{{CSP_NONCE}}";

pub fn page() -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut response = warp::reply::html(PAGE.replace(NONCE_SLOT, &nonce)).into_response();
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&policy).expect("the policy is ASCII"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Each copy carries its own nonce.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        // The favicon is an inline SVG, which must name its XML namespace.
        let page = PAGE
            .to_ascii_lowercase()
            .replace("http://www.w3.org/2000/svg", "");
        for external in ["http:", "https:", "src=", "@import"] {
            assert!(!page.contains(external), "{external:?} in chat.html");
        }
        // CSS `url(` (the script's `URL(` is another thing).
        assert!(!PAGE.contains("url("), "a CSS url() in chat.html");
    }

    #[test]
    fn every_script_and_style_carries_the_nonce_and_nothing_runs_inline() {
        let lower = PAGE.to_ascii_lowercase();
        assert_eq!(lower.matches("<script").count(), 1);
        assert_eq!(lower.matches("<style").count(), 1);
        assert_eq!(PAGE.matches(NONCE_SLOT).count(), 2);
        assert!(PAGE.contains(&format!("<script nonce=\"{NONCE_SLOT}\">")));
        assert!(PAGE.contains(&format!("<style nonce=\"{NONCE_SLOT}\">")));
        // Inline handlers and style attributes would be blocked by the policy anyway.
        assert!(!lower.contains(" style=\""), "a style attribute");
        assert!(!has_inline_handler(&lower), "an inline event handler");
    }

    /// ` onclick=`, ` onload=`, ...: an attribute whose name starts with `on`.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let name: String = html[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            name.len() > 2 && html[at + 1 + name.len()..].starts_with('=')
        })
    }

    #[test]
    fn text_from_people_and_models_is_never_parsed_as_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "DOMParser",
            "javascript:",
        ] {
            assert!(!PAGE.contains(sink), "chat.html uses {sink}");
        }
    }

    #[test]
    fn each_response_has_a_fresh_nonce_in_page_and_policy() {
        let first = page();
        let second = page();
        let policy = |r: &Response| {
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_ne!(policy(&first), policy(&second));
        assert!(policy(&first).starts_with("default-src 'none'; script-src 'nonce-"));
        assert_eq!(
            first.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(first.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
