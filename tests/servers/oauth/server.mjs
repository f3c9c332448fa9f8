// The authorization server of Junction's test suite: oidc-provider (a certified OpenID
// Connect and OAuth 2.0 implementation) on loopback, configured for the flows Junction runs.
//
//   node server.mjs [port] [--stop-with-stdin]     (port 0 or nothing: a free port)
//
// With --stop-with-stdin it also stops when its standard input ends: the test harness keeps
// that pipe open, so the server does not outlive a test process that was killed. Each line
// written to its standard input is echoed as a `mark` event (see below).
//
// It prints one JSON line per event on stdout: first {"event":"listening","issuer":…}, then
// every token grant (`grant.success`, `grant.error`) and every token saved, so a test can
// count token requests and learn the values it needs to revoke one, as an administrator of
// the provider could.
//
// Clients are registered by the tests through dynamic client registration (RFC 7591) with
// two extra metadata values: `access_token_ttl` (seconds) and `refresh_token_rotation`
// (`always` or `never`). Users sign in with any login and the password `wonderland`.
//
// The resource owner password grant is not part of oidc-provider (OAuth 2.1 drops it); it
// is added here through the provider's documented `registerGrantType`, issuing the
// provider's own tokens.

import Provider, { errors } from 'oidc-provider';

const PASSWORD = 'wonderland';
const port = Number(process.argv[2] ?? 0);

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const configuration = {
  clients: [],
  scopes: ['openid', 'offline_access', 'read', 'write', 'admin'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    registration: { enabled: true },
  },
  extraClientMetadata: {
    properties: ['access_token_ttl', 'refresh_token_rotation'],
  },
  ttl: {
    AccessToken: (_ctx, _token, client) => Number(client?.access_token_ttl ?? 3600),
    ClientCredentials: (_ctx, _token, client) => Number(client?.access_token_ttl ?? 600),
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    Session: 24 * 3600,
    Interaction: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
  },
  // Revoking an access token (with token_type_hint=access_token) ends that token only, as
  // at most providers; revoking a refresh token ends the whole grant.
  revokeGrantPolicy: (ctx) => !(ctx.oidc.route === 'revocation'
    && ctx.oidc.params?.token_type_hint === 'access_token'),
  rotateRefreshToken: (ctx) => ctx.oidc.client.refresh_token_rotation !== 'never',
  cookies: { keys: ['junction-test-oauth-server'] },
  pkce: { required: () => false },
};

const provider = new Provider('http://127.0.0.1', configuration);

provider.registerGrantType(
  'password',
  async (ctx) => {
    const { client, params } = ctx.oidc;
    if (!client.grantTypeAllowed('password')) {
      throw new errors.UnauthorizedClient('the password grant is not allowed for this client');
    }
    if (!params.username || params.password !== PASSWORD) {
      throw new errors.InvalidGrant('wrong username or password');
    }
    const known = new Set(configuration.scopes);
    const scope = (params.scope ?? '').split(' ').filter((s) => known.has(s)).join(' ');
    const grant = new provider.Grant({ accountId: params.username, clientId: client.clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const at = new provider.AccessToken({
      accountId: params.username, client, grantId, scope, gty: 'password',
    });
    const body = {
      access_token: await at.save(),
      token_type: 'Bearer',
      expires_in: at.expiration,
      scope,
    };
    if (scope.split(' ').includes('offline_access')) {
      const rt = new provider.RefreshToken({
        accountId: params.username, client, grantId, scope, gty: 'password', iiat: at.iat,
      });
      body.refresh_token = await rt.save();
    }
    ctx.body = body;
  },
  ['username', 'password', 'scope'],
);

provider.on('grant.success', (ctx) => emit({
  event: 'grant.success',
  grant_type: ctx.oidc.params.grant_type,
  client_id: ctx.oidc.client?.clientId,
}));
provider.on('grant.error', (ctx, error) => emit({
  event: 'grant.error',
  grant_type: ctx.oidc.params?.grant_type,
  client_id: ctx.oidc.client?.clientId,
  error: error.error,
  description: error.error_description,
}));
for (const kind of ['access_token', 'client_credentials', 'refresh_token']) {
  provider.on(`${kind}.saved`, (token) => emit({
    event: `${kind}.saved`,
    client_id: token.clientId,
    account_id: token.accountId,
    value: token.jti,
    consumed: Boolean(token.consumed),
  }));
}

const server = provider.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  // The issuer is only known once the port is: set it before the first request.
  provider.issuer = issuer;
  emit({ event: 'listening', issuer });
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
if (process.argv.includes('--stop-with-stdin')) {
  process.stdin.on('end', () => process.exit(0));
  // Each line the harness writes comes back as {"event":"mark","id":…}, after every event
  // of the requests answered before it: the harness waits for it before reading events.
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    for (const id of chunk.split('\n')) {
      if (id.trim() !== '') emit({ event: 'mark', id: id.trim() });
    }
  });
  process.stdin.resume();
}
