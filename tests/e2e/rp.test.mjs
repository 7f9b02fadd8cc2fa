// A strict third-party relying party (openid-client 6, the OpenID-certified
// library) runs the whole normal-login flow against a running vestibule:
// registration, authorization with PKCE through the real login and consent
// pages, code exchange, ID token verified against the JWKS, userinfo,
// refresh, revocation, and introspection showing the token inactive.
// Once on SQLite and once on PostgreSQL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { loginWithHttp, startVestibule, freePort } from './lib.mjs';

// No device scope: a device would be created on the homeserver before the
// token is issued, and this test runs without one (matrix-js.test.mjs and
// legacy.test.mjs cover devices through real Synapse).
const SCOPE = 'openid email urn:matrix:client:api:*';

async function registerClient(issuer, redirectUri) {
  return client.dynamicClientRegistration(
    new URL(issuer),
    {
      client_name: 'E2E relying party',
      client_uri: 'https://rp.example.org/',
      redirect_uris: [redirectUri],
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    client.None(),
    { execute: [client.allowInsecureRequests] },
  );
}

async function introspect(server, token) {
  const res = await fetch(new URL('oauth2/introspect', server.issuer), {
    method: 'POST',
    headers: { authorization: `Bearer ${server.matrixSecret}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
  assert.equal(res.status, 200);
  return res.json();
}

async function fullFlow(engine) {
  const server = await startVestibule({ engine });
  try {
    const port = await freePort();
    const redirectUri = `http://127.0.0.1:${port}/callback`;
    const config = await registerClient(server.issuer, redirectUri);
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, server.issuer, 'issuer byte for byte');
    assert.ok(meta.code_challenge_methods_supported.includes('S256'));

    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const authUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    const callback = await loginWithHttp(server, authUrl, redirectUri);
    if (callback.searchParams.get("error")) throw new Error(`authorization error: ${callback}`);
    // RFC 9207: the library checks `iss` because we advertise it.
    assert.equal(callback.searchParams.get('iss'), server.issuer);

    const tokens = await client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    assert.ok(tokens.access_token.startsWith('mat_'));
    assert.ok(tokens.refresh_token.startsWith('mar_'));
    const claims = tokens.claims();
    assert.equal(claims.nonce, nonce);

    // The ID token's signature, against the published JWKS.
    const jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
    const { payload, protectedHeader } = await jwtVerify(tokens.id_token, jwks, { issuer: server.issuer, audience: config.clientMetadata().client_id });
    assert.ok(protectedHeader.kid, 'kid in the header');
    assert.notEqual(protectedHeader.alg, 'none');
    assert.ok(payload.auth_time, 'auth_time');

    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(info.sub, claims.sub);
    assert.equal(info.username, server.username);

    const active = await introspect(server, tokens.access_token);
    assert.equal(active.active, true);
    assert.equal(active.username, server.username);
    assert.ok(active.scope.split(' ').includes('urn:matrix:client:api:*'));

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    assert.notEqual(refreshed.access_token, tokens.access_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    assert.equal((await introspect(server, refreshed.access_token)).active, true);

    await client.tokenRevocation(config, refreshed.refresh_token);
    assert.deepEqual(await introspect(server, refreshed.access_token), { active: false }, 'revoking the refresh token ends the session');
    assert.deepEqual(await introspect(server, tokens.access_token), { active: false });
  } catch (e) {
    console.error(server.logs());
    throw e;
  } finally {
    assert.equal(await server.stop(), 0, 'clean shutdown');
  }
}

test('strict relying party, whole flow, SQLite', () => fullFlow('sqlite'));
test('strict relying party, whole flow, PostgreSQL', () => fullFlow('postgres'));
