//! The OAuth 2.0 harness against the real authorization server, without Junction: the
//! browser consents, a client exchanges the code (PKCE S256), the resource API validates the
//! tokens by introspection, and revocation, refresh rotation, aborts and provider errors
//! look the way the end-to-end tests of Junction will rely on.

#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::extract::RawQuery;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use junction_tests::browser::Browser;
use junction_tests::oauth::{OAuthServer, RegisteredClient};
use junction_tests::resource::Resource;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A client's redirect URI on loopback: records the query of every request and answers a
/// small page.
struct Callback {
    url: String,
    received: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Callback {
    async fn start() -> Callback {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route(
            "/callback",
            get({
                let received = received.clone();
                move |RawQuery(query): RawQuery| async move {
                    received.lock().unwrap().push(query.unwrap_or_default());
                    axum::response::Html("<h1>callback received</h1>")
                }
            }),
        );
        let stop = junction_tests::serve_until_dropped(listener, app);
        Callback {
            url,
            received,
            _stop: stop,
        }
    }
}

/// A PKCE verifier (64 characters of the unreserved set) and its S256 challenge.
fn pkce() -> (String, String) {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = format!(
        "{}-{:?}-{}",
        std::process::id(),
        std::time::SystemTime::now(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let verifier: String = Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn authorization_url(
    oauth: &OAuthServer,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", "state-42"),
    ];
    params.extend_from_slice(extra);
    reqwest::Url::parse_with_params(&oauth.authorization_endpoint(), &params)
        .unwrap()
        .to_string()
}

async fn code_client(oauth: &OAuthServer, redirect_uri: &str, extra: Value) -> RegisteredClient {
    let mut metadata = json!({
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    metadata
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    oauth.register_client(metadata).await
}

async fn whoami(resource: &Resource, token: Option<&str>) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new().get(format!("{}/whoami", resource.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        challenge,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn code_with_pkce_then_resource_refresh_and_revocation() {
    let oauth = OAuthServer::start();
    let discovery = oauth.discovery().await;
    assert_eq!(discovery["issuer"], oauth.issuer());
    assert_eq!(
        discovery["authorization_endpoint"],
        oauth.authorization_endpoint()
    );
    assert_eq!(discovery["token_endpoint"], oauth.token_endpoint());
    assert_eq!(
        discovery["introspection_endpoint"],
        oauth.introspection_endpoint()
    );
    assert_eq!(
        discovery["revocation_endpoint"],
        oauth.revocation_endpoint()
    );

    let callback = Callback::start().await;
    let client = code_client(&oauth, &callback.url, json!({})).await;
    let (verifier, challenge) = pkce();
    let url = authorization_url(
        &oauth,
        &client.client_id,
        &callback.url,
        "read offline_access",
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("prompt", "consent"),
        ],
    );

    let page = Browser::new().consent(&url, "alice").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.url.starts_with(&callback.url), "{page:?}");
    assert!(page.body.contains("callback received"));
    assert_eq!(page.query("state").as_deref(), Some("state-42"));
    // RFC 9207: the provider names itself in the redirect.
    assert_eq!(page.query("iss").as_deref(), Some(oauth.issuer()));
    let code = page.query("code").expect("a code");
    assert_eq!(callback.received.lock().unwrap().len(), 1);

    // A wrong verifier is refused without spending the code.
    let wrong = oauth
        .token_request(
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &callback.url),
                ("code_verifier", &pkce().0),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400, "{wrong:?}");
    assert_eq!(wrong.field("error"), Some("invalid_grant"));
    let tokens = oauth
        .token_request(
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &callback.url),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    assert_eq!(tokens.field("token_type"), Some("Bearer"));
    assert_eq!(tokens.field("scope"), Some("read offline_access"));
    let access = tokens.field("access_token").unwrap().to_owned();
    let refresh = tokens.field("refresh_token").unwrap().to_owned();
    assert_eq!(oauth.grants("authorization_code", &client.client_id), 1);
    assert_eq!(
        oauth
            .grant_errors("authorization_code", &client.client_id)
            .len(),
        1
    );
    assert_eq!(
        oauth.latest_token("access_token", &client.client_id),
        Some(access.clone())
    );
    assert_eq!(
        oauth.latest_token("refresh_token", &client.client_id),
        Some(refresh.clone())
    );

    let resource = Resource::start(&oauth).await;
    let pong = reqwest::get(format!("{}/ping", resource.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(pong, "pong");
    let (status, challenge, _) = whoami(&resource, None).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")));
    let (status, _, me) = whoami(&resource, Some(&access)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"sub": "alice", "client_id": client.client_id, "scope": "read offline_access"})
    );
    // A refresh token is no access token, though it introspects as active.
    assert_eq!(
        oauth.introspect(&resource.client, &refresh).await["active"],
        true
    );
    assert_eq!(whoami(&resource, Some(&refresh)).await.0, 401);

    // Refresh with rotation: a new access token and a new refresh token.
    let refreshed = oauth
        .token_request(
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    let access2 = refreshed.field("access_token").unwrap().to_owned();
    let refresh2 = refreshed.field("refresh_token").unwrap().to_owned();
    assert_ne!(access2, access);
    assert_ne!(refresh2, refresh);
    assert_eq!(
        oauth
            .wait_for_grants(
                "refresh_token",
                &client.client_id,
                1,
                Duration::from_secs(2)
            )
            .await,
        1
    );
    assert_eq!(
        oauth.latest_token("refresh_token", &client.client_id),
        Some(refresh2.clone())
    );
    assert_eq!(
        oauth.tokens("access_token", &client.client_id),
        [access.clone(), access2.clone()]
    );
    assert_eq!(whoami(&resource, Some(&access2)).await.0, 200);

    // Revoking the access token revokes its whole grant, refresh token included.
    oauth.revoke(&client, &access2).await;
    let (status, challenge, body) = whoami(&resource, Some(&access2)).await;
    assert_eq!(status, 401);
    assert!(
        challenge
            .unwrap()
            .starts_with(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(
        oauth.introspect(&client, &access2).await,
        json!({"active": false})
    );
    assert_eq!(oauth.introspect(&client, &refresh2).await["active"], false);
    let after = oauth
        .token_request(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh2),
            ],
        )
        .await;
    assert_eq!(after.field("error"), Some("invalid_grant"), "{after:?}");
    let errors = oauth.grant_errors("refresh_token", &client.client_id);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["error"], "invalid_grant");

    assert_eq!(resource.unauthorized_count(), 3);
    assert_eq!(
        resource.tokens_seen(),
        [access.clone(), refresh, access2.clone(), access2]
    );
    let paths: Vec<String> = resource.seen().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/ping", "/whoami", "/whoami", "/whoami", "/whoami", "/whoami"
        ]
    );
}

#[tokio::test]
async fn abort_ends_in_access_denied() {
    let oauth = OAuthServer::start();
    let callback = Callback::start().await;
    let client = code_client(&oauth, &callback.url, json!({})).await;
    let url = authorization_url(&oauth, &client.client_id, &callback.url, "read", &[]);
    let page = Browser::new().abort(&url).await;
    assert!(page.url.starts_with(&callback.url), "{page:?}");
    assert_eq!(page.query("error").as_deref(), Some("access_denied"));
    assert_eq!(page.query("state").as_deref(), Some("state-42"));
    assert_eq!(page.query("code"), None);
    assert!(page.visited.iter().any(|u| u.ends_with("/abort")));

    // The same browser, signed in and consenting once, then aborting at the consent page.
    let browser = Browser::new();
    let consented = browser.consent(&url, "bob").await;
    assert!(consented.query("code").is_some(), "{consented:?}");
    let again = authorization_url(
        &oauth,
        &client.client_id,
        &callback.url,
        "read",
        &[("prompt", "consent")],
    );
    let page = browser.abort(&again).await;
    assert_eq!(
        page.query("error").as_deref(),
        Some("access_denied"),
        "{page:?}"
    );
    assert_eq!(oauth.grants("authorization_code", &client.client_id), 0);
}

#[tokio::test]
async fn provider_errors_come_back_to_the_test() {
    let oauth = OAuthServer::start();
    let callback = Callback::start().await;
    let client = code_client(&oauth, &callback.url, json!({"scope": "read"})).await;

    // An unregistered redirect URI: the provider renders the error itself and never
    // redirects.
    let elsewhere = format!("{}/elsewhere", callback.url);
    let url = authorization_url(&oauth, &client.client_id, &elsewhere, "read", &[]);
    let page = Browser::new().consent(&url, "alice").await;
    assert_eq!(page.status, 400, "{page:?}");
    assert!(page.url.starts_with(oauth.issuer()));
    assert!(page.body.contains("redirect_uri"), "{}", page.body);
    assert!(callback.received.lock().unwrap().is_empty());

    // A scope the client may not ask for: an error redirect to the client.
    let url = authorization_url(&oauth, &client.client_id, &callback.url, "read admin", &[]);
    let page = Browser::new().consent(&url, "alice").await;
    assert!(page.url.starts_with(&callback.url), "{page:?}");
    assert_eq!(page.query("error").as_deref(), Some("invalid_scope"));

    // An unknown client.
    let url = authorization_url(&oauth, "nobody", &callback.url, "read", &[]);
    let page = Browser::new().consent(&url, "alice").await;
    assert_eq!(page.status, 400, "{page:?}");
    assert!(page.body.contains("invalid_client"), "{}", page.body);
}

/// oidc-provider keeps `offline_access`, and so issues a refresh token, only when the
/// authorization request also has `prompt=consent`; unknown scopes are dropped.
#[tokio::test]
async fn offline_access_needs_prompt_consent() {
    let oauth = OAuthServer::start();
    let callback = Callback::start().await;
    let client = code_client(&oauth, &callback.url, json!({})).await;
    let browser = Browser::new();
    for (prompt, refresh) in [(None, false), (Some("consent"), true)] {
        let extra: Vec<(&str, &str)> = prompt.map(|p| ("prompt", p)).into_iter().collect();
        let url = authorization_url(
            &oauth,
            &client.client_id,
            &callback.url,
            "read offline_access unknown",
            &extra,
        );
        let page = browser.consent(&url, "carol").await;
        let code = page.query("code").unwrap_or_else(|| panic!("{page:?}"));
        let tokens = oauth
            .token_request(
                &client,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &callback.url),
                ],
            )
            .await;
        assert_eq!(tokens.status, 200, "{tokens:?}");
        assert_eq!(
            tokens.body.get("refresh_token").is_some(),
            refresh,
            "{tokens:?}"
        );
        let scope = if refresh {
            "read offline_access"
        } else {
            "read"
        };
        assert_eq!(tokens.field("scope"), Some(scope));
    }
}

#[tokio::test]
async fn client_credentials_password_grant_and_refresh_reuse() {
    let oauth = OAuthServer::start();
    let resource = Resource::start(&oauth).await;

    // client_credentials with a one-second access token.
    let machine = oauth
        .register_client(json!({
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "access_token_ttl": 1,
        }))
        .await;
    let tokens = oauth
        .token_request(
            &machine,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    assert_eq!(tokens.body["expires_in"], 1);
    let access = tokens.field("access_token").unwrap().to_owned();
    assert_eq!(
        oauth.latest_token("client_credentials", &machine.client_id),
        Some(access.clone())
    );
    assert_eq!(oauth.grants("client_credentials", &machine.client_id), 1);
    let (status, _, me) = whoami(&resource, Some(&access)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"sub": null, "client_id": machine.client_id, "scope": "read"})
    );

    // The password grant with rotation; reusing a rotated refresh token revokes the grant.
    let user = oauth
        .register_client(json!({
            "grant_types": ["password", "refresh_token"],
            "response_types": [],
            "redirect_uris": [],
        }))
        .await;
    let wrong = oauth
        .token_request(
            &user,
            &[
                ("grant_type", "password"),
                ("username", "dave"),
                ("password", "nope"),
            ],
        )
        .await;
    assert_eq!(wrong.field("error"), Some("invalid_grant"), "{wrong:?}");
    let first = oauth
        .token_request(
            &user,
            &[
                ("grant_type", "password"),
                ("username", "dave"),
                ("password", junction_tests::oauth::PASSWORD),
                ("scope", "read write offline_access"),
            ],
        )
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let refresh1 = first.field("refresh_token").unwrap().to_owned();
    let second = oauth
        .token_request(
            &user,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh1),
            ],
        )
        .await;
    assert_eq!(second.status, 200, "{second:?}");
    let access2 = second.field("access_token").unwrap().to_owned();
    assert_ne!(second.field("refresh_token").unwrap(), refresh1);
    let me = whoami(&resource, Some(&access2)).await.2;
    assert_eq!(me["sub"], "dave");
    let reused = oauth
        .token_request(
            &user,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh1),
            ],
        )
        .await;
    assert_eq!(reused.field("error"), Some("invalid_grant"), "{reused:?}");
    assert_eq!(whoami(&resource, Some(&access2)).await.0, 401);
    assert_eq!(oauth.grants("password", &user.client_id), 1);
    assert_eq!(oauth.grants("refresh_token", &user.client_id), 1);
    assert_eq!(oauth.grant_errors("password", &user.client_id).len(), 1);

    // Without rotation the same refresh token comes back.
    let steady = oauth
        .register_client(json!({
            "grant_types": ["password", "refresh_token"],
            "response_types": [],
            "redirect_uris": [],
            "refresh_token_rotation": "never",
        }))
        .await;
    let first = oauth
        .token_request(
            &steady,
            &[
                ("grant_type", "password"),
                ("username", "erin"),
                ("password", junction_tests::oauth::PASSWORD),
                ("scope", "read offline_access"),
            ],
        )
        .await;
    let refresh = first.field("refresh_token").unwrap().to_owned();
    for _ in 0..2 {
        let next = oauth
            .token_request(
                &steady,
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            )
            .await;
        assert_eq!(
            next.field("refresh_token"),
            Some(refresh.as_str()),
            "{next:?}"
        );
    }

    // The one-second client_credentials token has expired by now, or soon.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = whoami(&resource, Some(&access)).await;
    assert_eq!(status, 401, "{body}");
}
