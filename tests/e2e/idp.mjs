// The organisation's identity provider for the tests: oidc-provider 9
// (npm, OpenID Certified) on 127.0.0.1, configured from one JSON document.
//
//   node idp.mjs '{"port":0,"clients":[...],"users":[...]}'
//   IDP_CONFIG='{...}' node idp.mjs
//
// Config:
//   port                 0 (default) picks a free port
//   clients              oidc-provider client metadata, passed as written
//                        (client_id, client_secret, redirect_uris,
//                        token_endpoint_auth_method, backchannel_logout_uri,
//                        backchannel_logout_session_required, jwks, ...)
//   users                [{sub, preferred_username, name, email,
//                        email_verified, tenant_id}]; the login form takes a
//                        user's `sub` (or `preferred_username`)
//   idTokenClaims        true: the ID token carries the scope's claims
//                        (`conformIdTokenClaims: false`); false (default):
//                        only `sub`, the claims come from userinfo
//   password             when set, the login form requires it; otherwise any
//                        password is accepted (devInteractions)
//   pkceRequired         default true
//   callbackFragment     when set (e.g. "_=_", as Facebook-style providers
//                        do), appended as a fragment to every redirect to
//                        one of the clients' redirect_uris (the
//                        authorization response) whose Location has none
//
// Scopes: `profile` carries preferred_username, name, tenant_id; `email`
// carries email, email_verified. Back-channel logout is enabled.
//
// Prints one JSON line {"issuer": "http://127.0.0.1:PORT"} once listening;
// errors go to stderr (with IDP_VERBOSE=1 oidc-provider's notices too).
// Exits when stdin closes or on SIGTERM/SIGINT, so a test that dies takes
// the IdP with it.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

// oidc-provider's development notices are dropped unless IDP_VERBOSE is set;
// the provider's errors still reach stderr (the `idp …` lines below).
const log = process.env.IDP_VERBOSE ? console.error : () => {};
console.log = log;
console.info = log;
console.warn = log;
// Imported after that: it warns about the Node version as it loads.
const { default: Provider } = await import('oidc-provider');

const raw = process.argv[2] ?? process.env.IDP_CONFIG ?? '{}';
const config = JSON.parse(raw);
const users = config.users ?? [];
const password = config.password;
const redirectUris = (config.clients ?? []).flatMap((c) => c.redirect_uris ?? []);

function findUser(id) {
  return users.find((u) => u.sub === id) ?? users.find((u) => u.preferred_username === id);
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'idp-rs256', alg: 'RS256', use: 'sig' };

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients ?? [],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'tenant_id'],
    email: ['email', 'email_verified'],
  },
  conformIdTokenClaims: !config.idTokenClaims,
  pkce: { required: () => config.pkceRequired ?? true },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  // oidc-provider refuses outgoing requests (back-channel logout) to
  // special-use addresses as SSRF protection; in the tests every relying
  // party is on 127.0.0.1, so loopback URLs go out without that check.
  fetch(url, options) {
    if (new URL(url).hostname === '127.0.0.1') {
      const { dispatcher: _ignored, ...rest } = options;
      return globalThis.fetch(url, rest);
    }
    return globalThis.fetch(url, options);
  },
  async findAccount(_ctx, id) {
    const user = findUser(id);
    if (!user) return undefined;
    return {
      accountId: user.sub,
      async claims() {
        return { ...user };
      },
    };
  },
});

// The dev login form accepts any login; map it to a known user (by sub or
// preferred_username) and, when configured, check the password.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    const body = await readForm(ctx.req);
    if (body.get('prompt') === 'login') {
      const user = findUser(body.get('login') ?? '');
      if (!user || (password !== undefined && body.get('password') !== password)) {
        ctx.status = 401;
        ctx.type = 'text/plain';
        ctx.body = 'unknown user or wrong password';
        return;
      }
      body.set('login', user.sub);
    }
    // Hand the (possibly rewritten) form on to oidc-provider's parser.
    ctx.req.body = Object.fromEntries(body);
  }
  await next();
  // A provider that decorates its authorization response with a fragment
  // of its own: the test of RFC 9700 §4.1.3 (our redirects must not carry
  // it on to the Matrix client).
  const location = ctx.response.get('location');
  if (config.callbackFragment !== undefined && location && !location.includes('#')
      && redirectUris.some((u) => location.startsWith(u))) {
    ctx.response.set('location', `${location}#${config.callbackFragment}`);
  }
});

function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(new URLSearchParams(data)));
    req.on('error', reject);
  });
}

for (const event of ['server_error', 'backchannel.error', 'grant.error', 'authorization.error', 'end_session.error']) {
  provider.on(event, (...args) => {
    const err = args.find((a) => a instanceof Error);
    process.stderr.write(`idp ${event}: ${err?.message ?? ''} ${err?.error_description ?? ''} ${err?.error_detail ?? ''} ${err?.cause?.message ?? ''}\n`);
  });
}
provider.on('backchannel.success', (_ctx, client) => {
  process.stderr.write(`idp backchannel logout sent to ${client.clientId}\n`);
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
// Stdout carries only that line; a reader that stopped listening is no reason
// to crash.
process.stdout.on('error', () => {});

function stop() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
