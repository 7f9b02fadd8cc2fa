// RFC 8628 device authorization grant (the login half of MSC4108 QR login)
// with openid-client 6 as a strict client: dynamic registration, discovery
// of the device endpoint and grant, initiateDeviceAuthorization, one manual
// poll (authorization_pending), approval in a headless HTTP "browser"
// (/link?code= → sign-in → Allow), then pollDeviceAuthorizationGrant
// (ID token validated by the library), refresh and introspection.
// On SQLite and PostgreSQL; then through real Synapse: the device named in
// the scope exists there and whoami answers with it; and matrix-js-sdk 43
// (Element Web's engine: discovery through Synapse's auth_metadata,
// startDeviceAuthorizationGrant / waitForDeviceAuthorizationGrant) on
// PostgreSQL through Synapse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import * as sdk from 'matrix-js-sdk';
import { OAuth2 } from 'matrix-js-sdk/lib/oauth/index.js';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { Browser, forms, submit, startVestibule, startStack } from './lib.mjs';

const ARTIFACTS = resolve(process.env.VESTIBULE_ARTIFACTS ?? join(import.meta.dirname, '..', '..', 'artifacts'));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

// matrix-js-sdk 43 wants Node 22's Promise.withResolvers (see matrix-js.test.mjs).
Promise.withResolvers ??= function withResolvers() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
};

const skipSynapse = !process.env.VESTIBULE_SYNAPSE_VENV && !process.env.VESTIBULE_REQUIRE_SYNAPSE && 'VESTIBULE_SYNAPSE_VENV not set';

async function registerDeviceClient(issuer) {
  const config = await client.dynamicClientRegistration(
    new URL(issuer),
    {
      client_name: 'E2E TV',
      client_uri: 'https://tv.example.org/',
      application_type: 'native',
      grant_types: [GRANT, 'refresh_token'],
      token_endpoint_auth_method: 'none',
    },
    client.None(),
    { execute: [client.allowInsecureRequests] },
  );
  const meta = config.serverMetadata();
  assert.equal(meta.device_authorization_endpoint, new URL('oauth2/device', issuer).toString());
  assert.ok(meta.grant_types_supported.includes(GRANT), 'the grant that makes Element offer QR login');
  return config;
}

async function introspect(server, token) {
  const res = await fetch(new URL('oauth2/introspect', server.issuer), {
    method: 'POST',
    headers: { authorization: `Bearer ${server.matrixSecret}`, 'content-type': 'application/x-www-form-urlencoded', 'x-mas-supports-device-id': '1' },
    body: new URLSearchParams({ token }).toString(),
  });
  assert.equal(res.status, 200);
  return res.json();
}

/** The user on the other device: opens the link, signs in, allows. */
async function approve(server, verificationUriComplete, clientName = 'E2E TV') {
  const browser = new Browser();
  let { res, url, body } = await browser.follow(verificationUriComplete);
  assert.equal(res.status, 200, body);
  assert.ok(new URL(url).pathname.endsWith('/login'), `sign-in first: ${url}`);
  const login = forms(body, url).find((f) => f.fields.some((x) => x.type === 'password'));
  res = await submit(browser, login, { username: server.username, password: server.password });
  assert.equal(res.status, 303);
  ({ res, url, body } = await browser.follow(new URL(res.headers.get('location'), url).toString()));
  assert.equal(res.status, 200, body);
  assert.ok(body.includes(clientName), body);
  const allow = forms(body, url).find((f) => f.fields.some((x) => x.value === 'allow'));
  assert.ok(allow, `an Allow form:\n${body}`);
  const noCsrf = await browser.fetch(allow.action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(allow.action).origin },
    body: 'action=allow',
  });
  assert.equal(noCsrf.status, 403, 'CSRF-checked');
  res = await submit(browser, allow);
  const done = await res.text();
  assert.equal(res.status, 200, done);
  assert.match(done, /go back to your device/);
}

async function deviceFlow(server, scope) {
  const config = await registerDeviceClient(server.issuer);
  const auth = await client.initiateDeviceAuthorization(config, { scope });
  assert.match(auth.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  assert.equal(auth.verification_uri, new URL('link', server.issuer).toString());
  assert.equal(auth.interval, 5);
  // Before the user answers (RFC 8628 §3.5).
  const pending = await fetch(new URL('oauth2/token', server.issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: GRANT, device_code: auth.device_code, client_id: config.clientMetadata().client_id }).toString(),
  });
  assert.equal(pending.status, 400);
  assert.equal((await pending.json()).error, 'authorization_pending');
  // The library waits `interval` before its first poll; the user approves
  // meanwhile.
  const polling = client.pollDeviceAuthorizationGrant(config, auth);
  await approve(server, auth.verification_uri_complete);
  const tokens = await polling;
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.ok(tokens.access_token.startsWith('mat_'));
  assert.ok(tokens.refresh_token.startsWith('mar_'));
  assert.equal(tokens.claims().iss, server.issuer, 'ID token checked by the library');
  // Exchanged once.
  await assert.rejects(client.genericGrantRequest(config, GRANT, { device_code: auth.device_code }), (e) => e.error === 'invalid_grant');
  return { config, tokens };
}

async function plainFlow(engine) {
  const server = await startVestibule({ engine });
  try {
    // No device scope here: this server has no homeserver to create it on.
    const { config, tokens } = await deviceFlow(server, 'openid urn:matrix:client:api:*');
    const active = await introspect(server, tokens.access_token);
    assert.equal(active.active, true);
    assert.equal(active.username, server.username);
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    assert.equal((await introspect(server, refreshed.access_token)).active, true);
  } catch (e) {
    console.error(server.logs());
    throw e;
  } finally {
    assert.equal(await server.stop(), 0, 'clean shutdown');
  }
}

test('device authorization grant with a strict client, SQLite', () => plainFlow('sqlite'));
test('device authorization grant with a strict client, PostgreSQL', () => plainFlow('postgres'));

test('device authorization grant through Synapse: the device exists and whoami works', { skip: skipSynapse }, async () => {
  const stack = await startStack({ engine: 'sqlite' });
  const { server, proxy } = stack;
  try {
    const device = 'QRLOGIN042';
    const { tokens } = await deviceFlow(server, `openid urn:matrix:client:api:* urn:matrix:client:device:${device}`);
    // The new device uses its token at once (Element X's granting side
    // polls for the device right after the token is issued).
    const who = await fetch(new URL('_matrix/client/v3/account/whoami', proxy.url), {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    const body = await who.json();
    assert.equal(who.status, 200, JSON.stringify(body));
    assert.equal(body.user_id, `@${server.username}:localhost`);
    assert.equal(body.device_id, device);
    const dev = await fetch(new URL(`_matrix/client/v3/devices/${device}`, proxy.url), {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    assert.equal(dev.status, 200);
    assert.equal((await dev.json()).display_name, 'E2E TV');
  } catch (e) {
    console.error(stack.logs());
    throw e;
  } finally {
    await stack.stop();
  }
});

test('matrix-js-sdk (Element Web) device grant through Synapse: discovery via auth_metadata, tokens, whoami', { skip: skipSynapse }, async () => {
  const stack = await startStack({ engine: 'postgres' });
  const { server, proxy } = stack;
  try {
    const anon = sdk.createClient({ baseUrl: proxy.url });
    const metadata = await anon.getAuthMetadata();
    assert.equal(metadata.issuer, server.issuer);
    // What Element checks before offering QR sign-in.
    assert.ok(metadata.grant_types_supported.includes(GRANT));
    const clientId = await OAuth2.registerClient(metadata, {
      client_name: 'Element (e2e QR)',
      client_uri: 'https://app.element.example/',
      redirect_uris: ['https://app.element.example/callback'],
      application_type: 'web',
      grant_types: ['authorization_code', 'refresh_token', GRANT],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    });
    const deviceId = 'JSQRDEVICE';
    const oauth = new OAuth2(metadata, { clientId, deviceId });
    const session = await oauth.startDeviceAuthorizationGrant();
    const waiting = oauth.waitForDeviceAuthorizationGrant(session);
    await approve(server, session.verification_uri_complete, 'Element (e2e QR)');
    const tokens = await waiting;
    assert.ok(tokens.access_token, JSON.stringify(tokens));
    const authed = sdk.createClient({ baseUrl: proxy.url, accessToken: tokens.access_token, deviceId });
    const who = await authed.whoami();
    assert.equal(who.user_id, `@${server.username}:localhost`);
    assert.equal(who.device_id, deviceId);
    const refreshed = await oauth.performRefreshTokenGrant(tokens.refresh_token);
    assert.ok(refreshed.access_token);
  } catch (e) {
    console.error(stack.logs());
    throw e;
  } finally {
    await stack.stop();
  }
});

test('device grant approved in headless Chromium, the code typed on /link', async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const server = await startVestibule({ engine: 'sqlite' });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const config = await registerDeviceClient(server.issuer);
    const auth = await client.initiateDeviceAuthorization(config, { scope: 'openid urn:matrix:client:api:*' });
    const polling = client.pollDeviceAuthorizationGrant(config, auth);
    const page = await browser.newPage();
    await page.goto(auth.verification_uri);
    await page.screenshot({ path: join(ARTIFACTS, 'device-link.png'), fullPage: true });
    // Typed in lower case, without the dash.
    await page.locator('#code').fill(auth.user_code.replace('-', '').toLowerCase());
    await Promise.all([page.waitForURL(/\/login\?/), page.locator('form[method=post] [type=submit]').first().click()]);
    await page.locator('input:not([type=hidden]):not([type=password]):not([type=submit])').first().fill(server.username);
    await page.locator('input[type=password]').fill(server.password);
    await Promise.all([page.waitForURL(/\/device\//), page.locator('form:has(input[type=password]) [type=submit]').first().click()]);
    assert.ok((await page.content()).includes(auth.user_code), 'the approval page shows the code');
    await page.screenshot({ path: join(ARTIFACTS, 'device-consent.png'), fullPage: true });
    const allow = page.locator('form[method=post] button').filter({ hasText: /allow/i });
    await Promise.all([page.waitForLoadState(), allow.first().click()]);
    await page.locator('text=go back to your device').waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'device-done.png'), fullPage: true });
    const tokens = await polling;
    assert.ok(tokens.access_token.startsWith('mat_'));
  } catch (e) {
    console.error(server.logs());
    throw e;
  } finally {
    await browser.close();
    assert.equal(await server.stop(), 0);
  }
});
