// The normal login driven once in real headless Chromium (Debian's package,
// driven by playwright-core; never a downloaded browser). Screenshots of the
// login and consent pages are saved as artefacts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';
import { startVestibule, freePort } from './lib.mjs';

const ARTIFACTS = resolve(process.env.VESTIBULE_ARTIFACTS ?? join(import.meta.dirname, '..', '..', 'artifacts'));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

test('login and consent in headless Chromium', async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const server = await startVestibule({ engine: 'sqlite' });
  const port = await freePort();
  const redirectUri = `http://127.0.0.1:${port}/callback`;
  // The client's redirect target: records what the browser brings back.
  let received;
  const callbackServer = http.createServer((req, res) => {
    const url = new URL(req.url, redirectUri);
    if (url.pathname === '/callback') received = url; // not /favicon.ico
    res.writeHead(200, { 'content-type': 'text/plain' }).end('done');
  });
  await new Promise((r) => callbackServer.listen(port, '127.0.0.1', r));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const config = await client.dynamicClientRegistration(
      new URL(server.issuer),
      {
        client_name: 'Chromium E2E',
        client_uri: 'https://rp.example.org/',
        redirect_uris: [redirectUri],
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'none',
      },
      client.None(),
      { execute: [client.allowInsecureRequests] },
    );
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const authUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid urn:matrix:client:api:*', // no device: no homeserver in this test
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });

    const page = await browser.newPage();
    await page.goto(authUrl.toString());
    await page.locator('input[type=password]').waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'login.png'), fullPage: true });
    await page.locator('input:not([type=hidden]):not([type=password]):not([type=submit])').first().fill(server.username);
    await page.locator('input[type=password]').fill(server.password);
    await Promise.all([page.waitForNavigation(), page.locator('form:has(input[type=password]) [type=submit]').first().click()]);

    if (!received) {
      await page.screenshot({ path: join(ARTIFACTS, 'consent.png'), fullPage: true });
      const allow = page.locator('form[method=post] button, form[method=post] input[type=submit]').filter({ hasText: /allow|continue|consent|accept/i });
      await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirectUri)), allow.first().click()]);
    }
    assert.ok(received, 'the browser came back to the client');
    assert.equal(received.searchParams.get('state'), state);
    assert.equal(received.searchParams.get('iss'), server.issuer);
    const tokens = await client.authorizationCodeGrant(config, received, { pkceCodeVerifier: verifier, expectedState: state });
    assert.ok(tokens.access_token.startsWith('mat_'));
  } catch (e) {
    console.error(server.logs());
    throw e;
  } finally {
    await browser.close();
    callbackServer.close();
    assert.equal(await server.stop(), 0);
  }
});
