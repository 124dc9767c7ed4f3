// panva's oidc-provider as the opaque-token identity provider of token-exchange's tests: RFC 7662
// introspection (plain JSON, or an RFC 9701 JWT for clients that ask for one), OIDC userinfo
// (plain or signed), RFC 7009 revocation, all on 127.0.0.1.
//
// No browser takes part in a test, so one test-only endpoint stands in for the login and consent
// of the code flow: POST /test-only/access-tokens with a JSON body
//   { "account": "alice", "client_id": "app", "scope": "openid email read", "expires_in": 600 }
// records a grant for that account and client, and answers with a fresh opaque access token,
// exactly as the token endpoint would have issued it.
//
// Environment: PORT (required), ISSUER (default http://127.0.0.1:$PORT).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const MINT_PATH = '/test-only/access-tokens';
const OIDC_SCOPES = new Set(['openid', 'email', 'profile', 'offline_access']);

const port = Number.parseInt(process.env.PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0) {
  console.error('PORT must name the port to listen on');
  process.exit(2);
}
const issuer = process.env.ISSUER ?? `http://127.0.0.1:${port}`;

// Fresh keys every run: nothing of a previous run can verify against this one.
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const configuration = {
  clients: [
    {
      // The application users sign in to: its access tokens are what gateways present.
      client_id: 'app',
      client_secret: 'app-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    },
    {
      // An application that registered signed userinfo: the userinfo JWT's aud is this client,
      // the one its users' access tokens are issued to.
      client_id: 'signed-userinfo-app',
      client_secret: 'signed-userinfo-app-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
      userinfo_signed_response_alg: 'RS256',
    },
    {
      // token-exchange itself, introspecting with client_secret_basic and plain JSON answers.
      client_id: 'token-exchange',
      client_secret: 'introspector-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
    {
      // token-exchange asking for RFC 9701 signed introspection answers and signed userinfo.
      client_id: 'token-exchange-jwt',
      client_secret: 'introspector-jwt-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      introspection_signed_response_alg: 'RS256',
      userinfo_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys: [{ ...signingKey, kid: `test-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'email', 'profile', 'offline_access', 'read', 'write'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Any account id names a user: each test signs in users of its own.
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true, name: `User ${id}` };
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    jwtIntrospection: { enabled: true },
    jwtUserinfo: { enabled: true },
  },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 600,
    Interaction: 600,
    RefreshToken: 3600,
    Session: 3600,
  },
};

const provider = new Provider(issuer, configuration);
const handleOidc = provider.callback();

/** The access token the code flow would have ended with, for `account` at `client_id`. */
async function mintAccessToken({ account, client_id: clientId, scope = 'openid', expires_in: expiresIn }) {
  if (typeof account !== 'string' || account === '' || typeof clientId !== 'string') {
    throw new TypeError('account and client_id are required strings');
  }
  const client = await provider.Client.find(clientId);
  if (!client) {
    throw new TypeError(`no client ${clientId}`);
  }
  const grant = new provider.Grant({ accountId: account, clientId });
  const oidcScope = scope.split(' ').filter((name) => OIDC_SCOPES.has(name));
  grant.addOIDCScope(oidcScope.join(' '));
  const grantId = await grant.save();
  const token = new provider.AccessToken({
    accountId: account,
    client,
    grantId,
    gty: 'authorization_code',
    scope,
    ...(expiresIn === undefined ? {} : { expiresIn }),
  });
  return { access_token: await token.save(), token_type: 'Bearer', expires_in: token.expiration, scope };
}

async function readJson(request) {
  const chunks = [];
  for await (const chunk of request) {
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

function answer(response, status, body) {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  response.end(JSON.stringify(body));
}

const server = createServer(async (request, response) => {
  if (request.method === 'POST' && request.url === MINT_PATH) {
    try {
      answer(response, 200, await mintAccessToken(await readJson(request)));
    } catch (error) {
      answer(response, 400, { error: 'invalid_request', error_description: error.message });
    }
    return;
  }
  handleOidc(request, response);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ${issuer} listening on 127.0.0.1:${port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
