//! OAuth 2.0 grants against a connection's provider, with the `oauth2` crate: the
//! authorization URL (with `state` and PKCE), the code exchange, the password and client
//! credentials grants, and refresh. Token requests go through the host's HTTP client,
//! follow no redirect, and never put a token or a secret in an error.

use crate::capabilities::http::{ExchangeError, HttpClient};
use crate::config::OAuthApp;
use crate::credentials::Secret;
use crate::runtime::manifest::{
    AuthKind, AuthScheme, CLIENT_ID_FIELD, CLIENT_SECRET_FIELD, SCOPES_FIELD, fill_placeholders,
};
use crate::store::{Timestamp, Tokens};
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, ResourceOwnerPassword,
    ResourceOwnerUsername, Scope, StandardErrorResponse, TokenResponse as _, TokenUrl,
};
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// How long a token request may take.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest token response read.
const TOKEN_RESPONSE_MAX: usize = 256 * 1024;

/// The grant a scheme uses.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Authorization code, with PKCE when the provider supports it.
    Code {
        pkce: bool,
    },
    /// Resource owner password.
    Password {
        username: String,
        password: Secret,
    },
    ClientCredentials,
}

impl Grant {
    /// Whether tokens from this grant can be renewed without the user: with a refresh
    /// token, or by running the grant again (password, client credentials).
    pub fn renewable(&self, has_refresh_token: bool) -> bool {
        has_refresh_token || !matches!(self, Self::Code { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Code { .. } => "authorization_code",
            Self::Password { .. } => "password",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

/// Everything needed to talk to a connection's provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub grant: Grant,
    pub authorize_url: Option<Url>,
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Whether the client is the user's own (bring your own app).
    pub own_app: bool,
    /// The scopes requested (the mandatory ones included).
    pub scopes: Vec<String>,
    pub mandatory_scopes: Vec<String>,
    /// Where the provider sends the user back (the authorization code grant).
    pub redirect_uri: String,
}

/// Why a connection's OAuth settings cannot be used. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error(
        "no OAuth app is set up for connector `{connector}`: give your own app's `client_id` and `client_secret`{own}, or ask the operator to add [oauth_apps.{connector}] to the service's configuration"
    )]
    NoApp {
        connector: String,
        own: &'static str,
    },
    #[error(
        "connector `{connector}` takes its OAuth endpoints from connection fields ({url}); the service's own app is only sent to endpoints its configuration names. Bring your own OAuth app (`client_id`, `client_secret`), or ask the operator to set `authorize_url` and `token_url` in [oauth_apps.{connector}]"
    )]
    AppEndpointsFromFields { connector: String, url: String },
    #[error("the OAuth endpoint `{url}` cannot be built: field `{field}` is not set")]
    MissingField { url: String, field: String },
    #[error("the OAuth endpoint `{url}` is not a valid URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("`{field}` is required by this auth scheme")]
    Required { field: &'static str },
    #[error("auth scheme `{0}` is not an OAuth 2.0 scheme")]
    NotOAuth(String),
    #[error("the {0} grant has no consent in a browser; reconnect runs it directly")]
    NoAuthorizationStep(&'static str),
    /// A connection using its tenant's OAuth app would send it somewhere the app's
    /// operator did not fix.
    #[error("{0}")]
    TenantApp(String),
}

/// Why a token request failed. Never contains a token or a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GrantError {
    /// The provider answered with an OAuth error (`invalid_grant`, `invalid_client`…).
    #[error("the provider refused the {grant} request: {code}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        grant: &'static str,
        code: String,
        description: Option<String>,
    },
    #[error("the token request failed: {0}")]
    Unreachable(String),
    #[error("the token endpoint's answer is not an OAuth 2.0 token response{0}")]
    Malformed(String),
    #[error("the grant lacks the mandatory {}: {}", if missing.len() == 1 { "scope" } else { "scopes" }, missing.join(", "))]
    MissingScopes { missing: Vec<String> },
}

impl GrantError {
    /// The provider's OAuth error code, if it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            Self::MissingScopes { .. } => Some("missing_scopes"),
            _ => None,
        }
    }

    /// Whether trying again later cannot help: the grant itself was refused.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code(),
            Some(
                "invalid_grant"
                    | "invalid_client"
                    | "unauthorized_client"
                    | "unsupported_grant_type"
                    | "invalid_scope"
                    | "missing_scopes"
            )
        )
    }
}

/// What to tell a user about a provider error: the likely cause and the fix (most of them
/// are the usual mistakes of a bring-your-own app).
pub fn hint(code: &str, provider: Option<&Provider>) -> String {
    let redirect = provider
        .map(|p| p.redirect_uri.as_str())
        .unwrap_or("the redirect URI this service shows (GET /v1/oauth/redirect-uri)");
    let scopes = provider.map(|p| p.scopes.join(" ")).unwrap_or_default();
    match code {
        "access_denied" => "The access was declined at the provider. Reconnect and approve the requested access.".into(),
        "invalid_client" | "unauthorized_client" => "The provider did not accept the OAuth app: check the client id and the client secret (fields `client_id` and `client_secret`) against the app's settings at the provider, and that the app may use this grant type.".into(),
        "redirect_uri_mismatch" => format!("The OAuth app does not list this service's redirect URI. Register exactly {redirect} in the app's settings, then reconnect."),
        "invalid_scope" => format!("The OAuth app may not request some of these scopes: {scopes}. Allow them in the app's settings at the provider, or change the connection's `scopes`."),
        "missing_scopes" => "The provider granted fewer scopes than the connector needs. Allow the missing scopes in the OAuth app's settings (or approve them at the consent), then reconnect.".into(),
        "invalid_grant" => "The provider refused the grant: the authorization expired or was revoked, the code was used already, or the password is wrong. Reconnect to authorize again.".into(),
        "invalid_request" => "The provider rejected the request as malformed; check the OAuth app's settings (redirect URI, PKCE, grant types).".into(),
        _ => "Check the OAuth app's settings at the provider, then reconnect.".into(),
    }
}

/// A URL whose host is this machine, where plain HTTP is acceptable.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn endpoint(template: &str, plain: &BTreeMap<String, String>) -> Result<Url, SetupError> {
    let mut missing = None;
    let text = fill_placeholders(template, |name, _| {
        let v = plain.get(name).cloned();
        if v.is_none() {
            missing = Some(name.to_owned());
        }
        v
    });
    let text = text.ok_or_else(|| SetupError::MissingField {
        url: template.into(),
        field: missing.unwrap_or_default(),
    })?;
    let url = Url::parse(&text).map_err(|e| SetupError::BadUrl {
        url: template.into(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(SetupError::BadUrl {
            url: template.into(),
            reason: "OAuth endpoints must use https (plain http only on this machine's loopback)"
                .into(),
        }),
    }
}

impl Provider {
    /// The provider settings of `scheme` for a connection of connector `connector` with
    /// the non-secret values `plain` and the secret ones `secret`; `app` is the service's
    /// own OAuth app for the connector, if the operator set one up.
    pub fn resolve(
        connector: &str,
        scheme: &AuthScheme,
        plain: &BTreeMap<String, String>,
        secret: impl Fn(&str) -> Option<Secret>,
        app: Option<&OAuthApp>,
        redirect_uri: &str,
    ) -> Result<Self, SetupError> {
        let (grant, authorize, token, scopes, mandatory, allow_own) = match &scheme.kind {
            AuthKind::Oauth2Code {
                authorize_url,
                token_url,
                scopes,
                mandatory_scopes,
                pkce,
                allow_own_app,
            } => (
                Grant::Code { pkce: *pkce },
                Some(authorize_url),
                token_url,
                scopes,
                mandatory_scopes,
                *allow_own_app,
            ),
            AuthKind::Oauth2Password {
                token_url,
                scopes,
                mandatory_scopes,
                username_field,
                password_field,
            } => (
                Grant::Password {
                    username: plain
                        .get(username_field)
                        .cloned()
                        .ok_or(SetupError::Required { field: "username" })?,
                    password: secret(password_field)
                        .ok_or(SetupError::Required { field: "password" })?,
                },
                None,
                token_url,
                scopes,
                mandatory_scopes,
                true,
            ),
            AuthKind::Oauth2ClientCredentials {
                token_url,
                scopes,
                mandatory_scopes,
            } => (
                Grant::ClientCredentials,
                None,
                token_url,
                scopes,
                mandatory_scopes,
                true,
            ),
            _ => return Err(SetupError::NotOAuth(scheme.id.clone())),
        };
        let own_id = if allow_own {
            plain.get(CLIENT_ID_FIELD).cloned()
        } else {
            None
        };
        let (client_id, client_secret, own_app, authorize_template, token_template) =
            match (own_id, app) {
                (Some(id), _) => (
                    id,
                    secret(CLIENT_SECRET_FIELD),
                    true,
                    authorize.cloned(),
                    token.clone(),
                ),
                (None, _) if matches!(grant, Grant::ClientCredentials) => {
                    return Err(SetupError::Required {
                        field: CLIENT_ID_FIELD,
                    });
                }
                (None, Some(app)) => {
                    // The service's secret goes only to endpoints fixed by the connector or
                    // named by the operator, never to one a user's field points at.
                    let pick = |configured: &Option<String>, declared: Option<&String>| match (
                        configured, declared,
                    ) {
                        (Some(c), _) => Ok(Some(c.clone())),
                        (None, Some(d))
                            if !crate::capabilities::allowed_hosts::placeholders(d).is_empty() =>
                        {
                            Err(SetupError::AppEndpointsFromFields {
                                connector: connector.into(),
                                url: d.clone(),
                            })
                        }
                        (None, d) => Ok(d.cloned()),
                    };
                    let authorize = pick(&app.authorize_url, authorize)?;
                    let token = pick(&app.token_url, Some(token))?.unwrap_or_default();
                    (
                        app.client_id.clone(),
                        app.client_secret.clone(),
                        false,
                        authorize,
                        token,
                    )
                }
                (None, None) => {
                    return Err(SetupError::NoApp {
                        connector: connector.into(),
                        own: if allow_own {
                            ""
                        } else {
                            " (this connector does not allow it)"
                        },
                    });
                }
            };
        let mut requested: Vec<String> = match plain.get(SCOPES_FIELD) {
            Some(s) if allow_own => s
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => scopes.clone(),
        };
        for m in mandatory {
            if !requested.contains(m) {
                requested.push(m.clone());
            }
        }
        Ok(Self {
            grant,
            authorize_url: authorize_template
                .map(|t| endpoint(&t, plain))
                .transpose()?,
            token_url: endpoint(&token_template, plain)?,
            client_id,
            client_secret,
            own_app,
            scopes: requested,
            mandatory_scopes: mandatory.clone(),
            redirect_uri: redirect_uri.into(),
        })
    }

    /// The authorization URL the user opens, with `state` and, when the provider supports
    /// it, a PKCE challenge; returns the URL and the verifier to keep server-side.
    pub fn authorization_url(&self, state: &str) -> Result<(Url, Option<Secret>), SetupError> {
        let Some(auth) = &self.authorize_url else {
            return Err(SetupError::NoAuthorizationStep(self.grant.name()));
        };
        let redirect =
            RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| SetupError::BadUrl {
                url: self.redirect_uri.clone(),
                reason: e.to_string(),
            })?;
        let client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(auth.clone()))
            .set_redirect_uri(redirect);
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().cloned().map(Scope::new));
        let mut verifier = None;
        if matches!(self.grant, Grant::Code { pkce: true }) {
            let (challenge, v) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            verifier = Some(Secret::new(v.secret().as_str()));
        }
        let (url, _) = request.url();
        Ok((url, verifier))
    }

    fn client(
        &self,
    ) -> BasicClient<
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    > {
        let mut client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(self.token_url.clone()));
        if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        if let Ok(redirect) = RedirectUrl::new(self.redirect_uri.clone()) {
            client = client.set_redirect_uri(redirect);
        }
        client
    }

    /// Exchanges an authorization code (and the PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        http: &HttpClient,
        code: &str,
        verifier: Option<&Secret>,
    ) -> Result<Tokens, GrantError> {
        let client = self.client();
        let mut request = client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(v) = verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(v.expose().to_owned()));
        }
        let response = request.request_async(&sender(http)).await;
        self.tokens("authorization_code", response, None)
    }

    /// Runs the password or client credentials grant.
    pub async fn request_tokens(&self, http: &HttpClient) -> Result<Tokens, GrantError> {
        let client = self.client();
        let scopes = self.scopes.iter().cloned().map(Scope::new);
        match &self.grant {
            Grant::Password { username, password } => {
                let user = ResourceOwnerUsername::new(username.clone());
                let pass = ResourceOwnerPassword::new(password.expose().to_owned());
                let response = client
                    .exchange_password(&user, &pass)
                    .add_scopes(scopes)
                    .request_async(&sender(http))
                    .await;
                self.tokens("password", response, None)
            }
            Grant::ClientCredentials => {
                let response = client
                    .exchange_client_credentials()
                    .add_scopes(scopes)
                    .request_async(&sender(http))
                    .await;
                self.tokens("client_credentials", response, None)
            }
            Grant::Code { .. } => Err(GrantError::Refused {
                grant: "authorization_code",
                code: "consent_required".into(),
                description: Some("the user must authorize the connection again".into()),
            }),
        }
    }

    /// Refreshes with `refresh_token`; a provider that does not rotate it keeps the old one.
    pub async fn refresh(
        &self,
        http: &HttpClient,
        refresh_token: &Secret,
        granted: &[String],
    ) -> Result<Tokens, GrantError> {
        let client = self.client();
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .request_async(&sender(http))
            .await;
        let mut tokens = self.tokens("refresh_token", response, Some(granted))?;
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    fn tokens(
        &self,
        grant: &'static str,
        response: Result<
            BasicTokenResponse,
            RequestTokenError<ExchangeError, StandardErrorResponse<BasicErrorResponseType>>,
        >,
        previously_granted: Option<&[String]>,
    ) -> Result<Tokens, GrantError> {
        let response = response.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => GrantError::Refused {
                grant,
                code: r.error().as_ref().to_owned(),
                description: r.error_description().cloned(),
            },
            RequestTokenError::Request(e) => GrantError::Unreachable(e.to_string()),
            // The body may hold a token: only the place of the problem is told.
            RequestTokenError::Parse(e, _) => {
                let path = e.path().to_string();
                GrantError::Malformed(if path == "." {
                    String::new()
                } else {
                    format!(" (at `{path}`)")
                })
            }
            RequestTokenError::Other(_) => GrantError::Malformed(String::new()),
        })?;
        let now = Timestamp::now();
        // Without `scope` in the answer, the grant is what was asked for (RFC 6749 5.1),
        // or for a refresh what was granted before.
        let scopes: Vec<String> = match response.scopes() {
            Some(s) => s.iter().map(|s| s.to_string()).collect(),
            None => previously_granted
                .map(<[String]>::to_vec)
                .unwrap_or_else(|| self.scopes.clone()),
        };
        let missing: Vec<String> = self
            .mandatory_scopes
            .iter()
            .filter(|m| !scopes.contains(m))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(GrantError::MissingScopes { missing });
        }
        Ok(Tokens {
            access_token: Secret::new(response.access_token().secret().as_str()),
            refresh_token: response
                .refresh_token()
                .map(|r| Secret::new(r.secret().as_str())),
            scopes,
            issued_at: now,
            expires_at: response.expires_in().map(|d| {
                Timestamp(
                    now.0
                        .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                )
            }),
        })
    }
}

/// The HTTP client as the `oauth2` crate calls it.
struct Sender<'a>(&'a HttpClient);

type Sent<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, ExchangeError>> + Send + 'a>,
>;

impl<'c> oauth2::AsyncHttpClient<'c> for Sender<'_> {
    type Error = ExchangeError;
    type Future = Sent<'c>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(
            self.0
                .exchange(request, TOKEN_REQUEST_TIMEOUT, TOKEN_RESPONSE_MAX),
        )
    }
}

fn sender(http: &HttpClient) -> Sender<'_> {
    Sender(http)
}

/// When tokens issued at `issued_at` and expiring at `expires_at` should be renewed: before
/// expiry by min(15 min, half their lifetime) when they can be (`renewable`: a refresh
/// token, or a grant the host can run again by itself); otherwise the access token serves
/// until it expires.
pub fn renew_at(
    issued_at: Timestamp,
    expires_at: Option<Timestamp>,
    renewable: bool,
) -> Option<Timestamp> {
    let expires = expires_at?;
    if !renewable {
        return Some(expires);
    }
    let lifetime = (expires.0 - issued_at.0).max(0);
    let margin = (lifetime / 2).min(15 * 60 * 1000);
    Some(Timestamp(expires.0 - margin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_before_expiry_by_the_smaller_of_fifteen_minutes_and_half_their_life() {
        let hour = renew_at(Timestamp(0), Some(Timestamp(3_600_000)), true);
        assert_eq!(hour, Some(Timestamp(3_600_000 - 900_000)));
        let short = renew_at(Timestamp(0), Some(Timestamp(10_000)), true);
        assert_eq!(short, Some(Timestamp(5_000)));
        assert_eq!(renew_at(Timestamp(0), None, true), None);
        // Nothing to renew it with: it serves until it expires.
        let last = renew_at(Timestamp(0), Some(Timestamp(10_000)), false);
        assert_eq!(last, Some(Timestamp(10_000)));
    }

    fn scheme(token_url: &str) -> AuthScheme {
        AuthScheme {
            id: "oauth".into(),
            title: "OAuth".into(),
            kind: AuthKind::Oauth2Code {
                authorize_url: format!("{token_url}/auth"),
                token_url: format!("{token_url}/token"),
                scopes: vec!["read".into()],
                mandatory_scopes: vec!["read".into(), "audit".into()],
                pkce: true,
                allow_own_app: true,
            },
        }
    }

    fn app() -> OAuthApp {
        OAuthApp {
            client_id: "service-app".into(),
            client_secret: Some(Secret::new("service-secret")),
            authorize_url: None,
            token_url: None,
        }
    }

    #[test]
    fn the_service_app_is_never_sent_to_an_endpoint_a_connection_field_chose() {
        let plain = BTreeMap::from([("issuer".to_owned(), "https://evil.test".to_owned())]);
        let err = Provider::resolve("c", &scheme("{issuer}"), &plain, |_| None, Some(&app()), "")
            .unwrap_err();
        assert!(
            matches!(err, SetupError::AppEndpointsFromFields { .. }),
            "{err}"
        );
        // The user's own app may go there: it is their secret.
        let mut own = plain.clone();
        own.insert(CLIENT_ID_FIELD.into(), "mine".into());
        let p =
            Provider::resolve("c", &scheme("{issuer}"), &own, |_| None, Some(&app()), "").unwrap();
        assert!(p.own_app);
        assert_eq!(p.token_url.as_str(), "https://evil.test/token");
    }

    #[test]
    fn mandatory_scopes_are_always_requested_and_plain_http_only_on_loopback() {
        let p = Provider::resolve(
            "c",
            &scheme("http://127.0.0.1:9"),
            &BTreeMap::new(),
            |_| None,
            Some(&app()),
            "",
        )
        .unwrap();
        assert_eq!(p.scopes, ["read", "audit"]);
        assert_eq!(p.client_id, "service-app");
        let err = Provider::resolve(
            "c",
            &scheme("http://auth.example.test"),
            &BTreeMap::new(),
            |_| None,
            Some(&app()),
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }
}
