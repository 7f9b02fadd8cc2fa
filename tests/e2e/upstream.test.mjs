// Issue 5 end to end: Matrix users sign in through the organisation's own
// OpenID Connect provider (oidc-provider 9 via idp.mjs), with Vestibule
// running the seed config's provider block as written (only `issuer` points
// at the test IdP; `${OPENMEET_CLIENT_SECRET}` stays a variable), in
// headless Chromium, a Matrix client (matrix-js-sdk) talking to real Synapse.
//
// - registration pre-filled from the ID token's claims, consent, tokens,
//   whoami through Synapse, display name and email on Synapse, tenant_id on
//   the account page (SQLite and PostgreSQL);
// - a second login lands in the same account; a local user with the same
//   localpart as an IdP user is not taken over (on_conflict: fail);
// - claims only at userinfo: imported with fetch_userinfo, and without it the
//   required localpart is missing → refused, nothing created;
// - an IdP that puts its own fragment (`#_=_`) on its authorization
//   response: it never reaches the client's redirect_uri (S18), whether
//   through our consent form, a redirect-only refusal, or `prompt=none`;
// - back-channel logout from the IdP (logout_all) ends our sessions and the
//   device on Synapse;
// - `manage import-users` on 10 000 rows, idempotent, invalid rows by line,
//   and an imported IdP user's first login goes into the imported account.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as sdk from 'matrix-js-sdk';
import { OAuth2 } from 'matrix-js-sdk/lib/oauth/index.js';
import { chromium } from 'playwright-core';
import { BIN, freePort, loginWithHttp, startIdp, startStack, startVestibule } from './lib.mjs';

// matrix-js-sdk 43 targets Node 22 (see matrix-js.test.mjs).
Promise.withResolvers ??= function withResolvers() {
  let res;
  let rej;
  const promise = new Promise((a, b) => { res = a; rej = b; });
  return { promise, resolve: res, reject: rej };
};

const ARTIFACTS = resolve(process.env.VESTIBULE_ARTIFACTS ?? join(import.meta.dirname, '..', '..', 'artifacts'));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// The seed config: the repository's verbatim copy of the design document's
// file (the config crate's tests load it too); where the shared original is
// present, the two must not have drifted apart.
const SEED_PATH = resolve(import.meta.dirname, '..', '..', 'crates', 'config', 'tests', 'fixtures', 'seed-mas-config.yaml');
const SHARED_SEED = resolve(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures', 'seed-mas-config.yaml');
const PROVIDER_ID = '01JAYS74TCG3BTWKADN5Q4518C';
const CLIENT_SECRET = randomBytes(24).toString('hex');
const IDP_PASSWORD = 'idp password';

const USERS = {
  dana: { sub: 'dana-sub', preferred_username: 'dana', name: 'Dana Scully', email: 'dana@corp.example', email_verified: true, tenant_id: 'tenant-blue' },
  bob: { sub: 'bob-sub', preferred_username: 'bob', name: 'Bob IdP', email: 'bob@corp.example', email_verified: true, tenant_id: 'tenant-red' },
  carol: { sub: 'carol-sub', preferred_username: 'carol', name: 'Carol Upstream', email: 'carol@corp.example', email_verified: true, tenant_id: 'tenant-green' },
};

/**
 * The seed's `upstream_oauth2` section as written, with only the `issuer`
 * line replaced (and, for a variant, lines added after it).
 */
function seedUpstreamYaml(issuer, addLines = []) {
  const seed = readFileSync(SEED_PATH, 'utf8');
  if (existsSync(SHARED_SEED)) assert.equal(seed, readFileSync(SHARED_SEED, 'utf8'), 'the repository copy of the seed is the original');
  const m = /^upstream_oauth2:\n(?:[ \t].*\n|\n)*/m.exec(seed);
  assert.ok(m, 'the seed has an upstream_oauth2 section');
  const block = m[0];
  const issuerLine = /^(\s+)issuer: .*$/m;
  assert.equal(block.match(new RegExp(issuerLine.source, 'gm')).length, 1, 'one provider issuer in the seed');
  assert.match(block, /client_secret: "\$\{OPENMEET_CLIENT_SECRET\}"/, 'the secret stays a variable');
  assert.match(block, new RegExp(`id: "${PROVIDER_ID}"`));
  return block.replace(issuerLine, (_l, indent) => [`${indent}issuer: "${issuer}"`, ...addLines.map((l) => `${indent}${l}`)].join('\n'));
}

const callbackUri = (port) => `http://127.0.0.1:${port}/upstream/callback/${PROVIDER_ID}`;

/** The IdP with the seed's client `mas_client` registered for our callback. */
function idpConfig(vestibulePort, { idTokenClaims = true, backchannel = false, callbackFragment } = {}) {
  const client = {
    client_id: 'mas_client',
    client_secret: CLIENT_SECRET,
    redirect_uris: [callbackUri(vestibulePort)],
  };
  if (backchannel) {
    client.backchannel_logout_uri = `http://127.0.0.1:${vestibulePort}/upstream/backchannel-logout/${PROVIDER_ID}`;
    client.backchannel_logout_session_required = true;
  }
  return { clients: [client], users: Object.values(USERS), idTokenClaims, password: IDP_PASSWORD, callbackFragment };
}

/**
 * IdP + Vestibule (+ Synapse and nginx) wired together. Vestibule's port is
 * chosen before it starts (the IdP must know our callback URL); when another
 * process took it meanwhile, start again on new ports.
 */
async function startUpstreamStack(opts = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startUpstreamStackOnce(opts);
    } catch (e) {
      if (attempt >= 3 || !/Address already in use|EADDRINUSE/.test(e.message)) throw e;
    }
  }
}

async function startUpstreamStackOnce({ engine = 'sqlite', synapse = true, idTokenClaims = true, backchannel = false, callbackFragment, addLines = [] } = {}) {
  const vestibulePort = await freePort();
  const idp = await startIdp(idpConfig(vestibulePort, { idTokenClaims, backchannel, callbackFragment }));
  const opts = { engine, extraYaml: seedUpstreamYaml(idp.issuer, addLines), env: { OPENMEET_CLIENT_SECRET: CLIENT_SECRET } };
  try {
    if (synapse) {
      const stack = await startStack({ ...opts, vestibulePort });
      return {
        ...stack,
        idp,
        logs: () => `${stack.logs()}\n--- idp ---\n${idp.logs()}`,
        async stop() { await stack.stop(); await idp.stop(); },
      };
    }
    const server = await startVestibule({ ...opts, port: vestibulePort });
    return {
      server,
      idp,
      logs: () => `${server.logs()}\n--- idp ---\n${idp.logs()}`,
      async stop() { await server.stop(); await idp.stop(); },
    };
  } catch (e) {
    await idp.stop();
    throw e;
  }
}

async function launchChromium() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

const shot = (page, name) => page.screenshot({ path: join(ARTIFACTS, `upstream-${name}.png`), fullPage: true });

/**
 * A loopback redirect target for the Matrix client (a native app). Its
 * `/bounce` answers `303 /callback?probe=1` (a Location without a fragment).
 */
async function startRedirectTarget() {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    if (req.url === '/bounce') return res.writeHead(303, { location: '/callback?probe=1' }).end();
    return res.writeHead(200, { 'content-type': 'text/plain' }).end('done');
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    uri: `http://127.0.0.1:${port}/callback`,
    bounce: `http://127.0.0.1:${port}/bounce`,
    close: () => new Promise((r) => server.close(r)),
  };
}

/**
 * Every document request of `page`'s tab, redirect hops included, with the
 * fragment the browser holds for it: Playwright's request URLs drop the
 * fragment (it never goes over the wire), the DevTools protocol reports it
 * as `urlFragment`.
 */
async function recordHops(page) {
  const cdp = await page.context().newCDPSession(page);
  const hops = [];
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.type === 'Document') hops.push({ url: e.request.url + (e.request.urlFragment ?? ''), method: e.request.method });
  });
  await cdp.send('Network.enable');
  return hops;
}

/**
 * A Matrix client (matrix-js-sdk) as Element Web starts a login: discovery
 * through Synapse, registration, the authorization URL to open.
 */
async function matrixClient(synapseUrl, redirectUri, deviceId) {
  const metadata = await sdk.createClient({ baseUrl: synapseUrl }).getAuthMetadata();
  const clientId = await OAuth2.registerClient(metadata, {
    client_name: 'Element (upstream e2e)',
    client_uri: 'https://app.element.example/',
    redirect_uris: [redirectUri],
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  });
  const oauth = new OAuth2(metadata, { clientId, deviceId });
  const state = randomBytes(8).toString('hex');
  const authUrl = await oauth.generateAuthorizationCodeGrantUrl(state, redirectUri, 'fragment');
  return {
    metadata,
    oauth,
    authUrl,
    /** Exchanges the code the browser brought back; a client on Synapse. */
    async finish(backUrl) {
      const params = new URLSearchParams(new URL(backUrl).hash.slice(1));
      assert.equal(params.get('state'), state);
      const tokens = await oauth.completeAuthorizationCodeGrant(params.get('code'), redirectUri);
      return { tokens, client: sdk.createClient({ baseUrl: synapseUrl, accessToken: tokens.access_token, deviceId }) };
    },
  };
}

/**
 * In the browser: our login page → the provider button → the IdP's login
 * form (and its consent form when it asks) → back at Vestibule. Returns
 * every status our /upstream/link/ page answered with, so a test can tell
 * whether the registration form was shown.
 */
async function signInAtIdp(page, { startUrl, idp, login, shotName }) {
  const linkStatuses = [];
  const onResponse = (r) => { if (new URL(r.url()).pathname.startsWith('/upstream/link/')) linkStatuses.push(r.status()); };
  page.on('response', onResponse);
  await page.goto(startUrl);
  const button = page.locator('a.provider', { hasText: 'OpenMeet' });
  await button.waitFor();
  if (shotName) await shot(page, shotName);
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(idp.issuer)), button.click()]);
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill(IDP_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.locator('button[type=submit]').click()]);
  if (page.url().startsWith(idp.issuer) && await page.locator('input[name=prompt][value=consent]').count()) {
    await Promise.all([page.waitForURL((u) => !u.toString().startsWith(idp.issuer)), page.locator('button[type=submit]').click()]);
  }
  await page.waitForLoadState();
  assert.ok(!page.url().startsWith(idp.issuer), `left the IdP: ${page.url()}`);
  return { linkStatuses, done: () => page.off('response', onResponse) };
}

/** Our consent page → Allow → the client's redirect URI. */
async function approveConsent(page, redirectUri, shotName) {
  const allow = page.locator('form[method=post] button', { hasText: /^\s*Allow\s*$/ });
  await allow.waitFor();
  if (shotName) await shot(page, shotName);
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirectUri)), allow.click()]);
  return page.url();
}

async function queryUser(stack, localpart) {
  const r = await fetch(new URL(`_synapse/mas/query_user?localpart=${encodeURIComponent(localpart)}`, stack.synapse.url), {
    headers: { authorization: `Bearer ${stack.server.matrixSecret}` },
  });
  return { status: r.status, body: await r.json() };
}

/** Polls `check` (which returns a value or undefined) until the deadline. */
async function eventually(what, check, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const skip = !process.env.VESTIBULE_SYNAPSE_VENV && !process.env.VESTIBULE_REQUIRE_SYNAPSE && 'VESTIBULE_SYNAPSE_VENV not set';

// Done-when 1 (and 2 on SQLite): first login registers from the claims,
// second login is the same user; a local user's localpart is not taken over.
async function firstLogin(engine, { more = false } = {}) {
  const stack = await startUpstreamStack({ engine });
  const { server, synapse, idp } = stack;
  const target = await startRedirectTarget();
  const browser = await launchChromium();
  try {
    const dana = USERS.dana;
    const m = await matrixClient(synapse.url, target.uri, 'UPSTREAMDEV1');
    assert.equal(m.metadata.issuer, server.issuer, 'Synapse serves our discovery document');

    const context = await browser.newContext();
    const page = await context.newPage();
    const signedIn = await signInAtIdp(page, { startUrl: m.authUrl, idp, login: dana.preferred_username, shotName: `${engine}-login` });
    // Our registration page, pre-filled from the ID token's claims.
    assert.match(new URL(page.url()).pathname, /^\/upstream\/link\//);
    await page.locator('h1', { hasText: 'Create your account' }).waitFor();
    await shot(page, `${engine}-register`);
    assert.equal((await page.locator('#localpart').textContent()).trim(), dana.preferred_username, 'localpart = preferred_username (require: fixed)');
    assert.equal(await page.locator('input[name=displayname]').inputValue(), dana.name, 'display name suggested');
    const emailBox = page.locator('input[name=import_email]');
    assert.equal(await emailBox.isChecked(), true, 'email suggested');
    assert.match(await page.locator('label', { has: emailBox }).textContent(), new RegExp(dana.email.replace('.', '\\.')));
    assert.equal(await page.locator('input[name="attr.tenant_id"]').isChecked(), true, 'tenant_id suggested');
    assert.equal((await page.locator('.attribute').textContent()).trim(), dana.tenant_id);
    await Promise.all([page.waitForNavigation(), page.locator('button[type=submit]', { hasText: 'Create account' }).click()]);

    const back = await approveConsent(page, target.uri, `${engine}-consent`);
    signedIn.done();
    const { tokens, client } = await m.finish(back);
    assert.ok(tokens.access_token.startsWith('mat_'));
    const who = await client.whoami();
    assert.equal(who.user_id, `@${dana.preferred_username}:localhost`);
    assert.equal(who.device_id, 'UPSTREAMDEV1');

    // The provisioning job carried the imported display name; the email
    // reached Synapse as the user's 3PID.
    await eventually('display name on Synapse', async () => {
      const u = await queryUser(stack, dana.preferred_username);
      return u.status === 200 && u.body.display_name === dana.name;
    });
    const { threepids } = await client.getThreePids();
    assert.deepEqual(threepids.map((t) => [t.medium, t.address]), [['email', dana.email]]);

    // tenant_id is stored and shown on the account page.
    await page.goto(new URL('account/', server.issuer).toString());
    await page.locator('text=tenant_id').first().waitFor();
    assert.match(await page.content(), new RegExp(`tenant_id[\\s\\S]{0,200}${dana.tenant_id}`));
    await shot(page, `${engine}-account`);
    assert.equal(server.sql(`SELECT a.value FROM user_attributes a JOIN users u ON u.id = a.user_id WHERE u.username = 'dana' AND a.name = 'tenant_id'`), dana.tenant_id);
    await context.close();

    if (!more) return;

    // 2. A second login (fresh browser, fresh IdP session) links to the same
    // Matrix user: the link page only redirects, no registration form.
    const m2 = await matrixClient(synapse.url, target.uri, 'UPSTREAMDEV2');
    const context2 = await browser.newContext();
    const page2 = await context2.newPage();
    const again = await signInAtIdp(page2, { startUrl: m2.authUrl, idp, login: dana.sub });
    const back2 = await approveConsent(page2, target.uri, `${engine}-second-consent`);
    again.done();
    assert.ok(again.linkStatuses.length > 0 && again.linkStatuses.every((s) => s === 303), `the link page only redirected: ${again.linkStatuses}`);
    const second = await m2.finish(back2);
    const who2 = await second.client.whoami();
    assert.equal(who2.user_id, who.user_id, 'same Matrix user');
    assert.equal(who2.device_id, 'UPSTREAMDEV2');
    assert.equal(server.sql(`SELECT COUNT(*) FROM users WHERE username LIKE 'dana%'`), '1');
    await context2.close();

    // A local account `bob` exists; the IdP's bob must not take it over.
    const bobPassword = 'bob local password 123';
    server.cli(['manage', 'register-user', 'bob', '--password', bobPassword]);
    const m3 = await matrixClient(synapse.url, target.uri, 'UPSTREAMDEV3');
    const context3 = await browser.newContext();
    const page3 = await context3.newPage();
    // The localpart is required from the IdP and taken: the link page says
    // so at once (409), before any form.
    const bobAtIdp = await signInAtIdp(page3, { startUrl: m3.authUrl, idp, login: USERS.bob.preferred_username });
    await page3.locator('[role=alert]').waitFor();
    bobAtIdp.done();
    assert.deepEqual(bobAtIdp.linkStatuses, [409]);
    assert.equal(await page3.locator('h1', { hasText: 'Create your account' }).count(), 0);
    const text = await page3.locator('[role=alert]').textContent();
    assert.match(text, /@bob:localhost belongs to an existing account/);
    assert.match(text, /was NOT linked/);
    await shot(page3, `${engine}-conflict`);
    await context3.close();
    assert.equal(server.sql(`SELECT COUNT(*) FROM upstream_links l JOIN users u ON u.id = l.user_id WHERE u.username = 'bob'`), '0', 'local bob has no link');
    assert.equal(server.sql(`SELECT COUNT(*) FROM users WHERE username LIKE 'bob%'`), '1', 'no other account was made');
    // Local bob's password login still works, through Synapse.
    const web = 'https://app.element.example/callback';
    const pwOauth = new OAuth2(m.metadata, { clientId: await OAuth2.registerClient(m.metadata, {
      client_name: 'Element (password)', client_uri: 'https://app.element.example/', redirect_uris: [web],
      application_type: 'web', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none',
    }), deviceId: 'BOBPASSWORD' });
    const pwUrl = await pwOauth.generateAuthorizationCodeGrantUrl('bobstate', web, 'fragment');
    const pwBack = await loginWithHttp({ username: 'bob', password: bobPassword }, new URL(pwUrl), web);
    const pwTokens = await pwOauth.completeAuthorizationCodeGrant(new URLSearchParams(pwBack.hash.slice(1)).get('code'), web);
    const bobClient = sdk.createClient({ baseUrl: synapse.url, accessToken: pwTokens.access_token });
    assert.equal((await bobClient.whoami()).user_id, '@bob:localhost');
  } catch (e) {
    console.error(stack.logs());
    throw e;
  } finally {
    await browser.close();
    await target.close();
    await stack.stop();
  }
}

test('upstream login with the seed provider: register from claims, second login, no takeover (SQLite)', { skip }, () => firstLogin('sqlite', { more: true }));
test('upstream login with the seed provider: register from claims (PostgreSQL)', { skip }, () => firstLogin('postgres'));

// S18 / RFC 9700 §4.1.3: a browser re-attaches the current URL's fragment to
// a redirect whose Location has none (RFC 9110 §10.2.2), so a fragment the
// IdP puts on its authorization response (`#_=_`, as Facebook does) would
// ride along our redirects to the Matrix client's redirect_uri, where it
// could be mistaken for (or clobber) a fragment-mode response. Our
// Locations end with `#` (an empty fragment) to stop it. Proven in
// Chromium, with the client on response_mode=query.
async function upstreamFragment(engine) {
  const FRAGMENT = '_=_';
  const stack = await startUpstreamStack({ engine, callbackFragment: FRAGMENT });
  const { server, idp } = stack;
  const dir = mkdtempSync(join(tmpdir(), 'vestibule-e2e-fragment-'));
  const target = await startRedirectTarget();
  const browser = await launchChromium();
  try {
    const dana = USERS.dana;
    // Dana's account is already linked to her IdP subject: the link page
    // only redirects (no registration form in the chain).
    const csv = join(dir, 'users.csv');
    writeFileSync(csv, `localpart,email,displayname,provider_id,subject,tenant_id\ndana,${dana.email},${dana.name},${PROVIDER_ID},${dana.sub},${dana.tenant_id}\n`);
    assert.match(server.cli(['manage', 'import-users', csv]), /1 created/);

    const ours = (u) => u.startsWith(server.issuer);
    const atCallback = (h) => ours(h.url) && new URL(h.url).pathname.startsWith('/upstream/callback/');
    const carries = (u) => u.includes(FRAGMENT);
    /** The hops from our callback on; asserts the callback carried the IdP's fragment. */
    const afterCallback = (hops) => {
      const i = hops.findIndex(atCallback);
      assert.ok(i >= 0, `the browser went through our callback: ${JSON.stringify(hops)}`);
      assert.equal(new URL(hops[i].url).hash, `#${FRAGMENT}`, 'the IdP redirected to our callback with its fragment');
      return hops.slice(i + 1);
    };

    // The premise, in this Chromium: a fragment survives a redirect whose
    // Location has none.
    const probe = await browser.newContext();
    const probePage = await probe.newPage();
    await probePage.goto(`${target.bounce}#${FRAGMENT}`);
    assert.equal(probePage.url(), `${target.uri}?probe=1#${FRAGMENT}`, 'Chromium re-attaches the fragment (RFC 9110 §10.2.2)');
    await probe.close();

    const metadata = await (await fetch(new URL('.well-known/openid-configuration', server.issuer))).json();
    const clientId = await OAuth2.registerClient(metadata, {
      client_name: 'Element (fragment e2e)',
      client_uri: 'https://app.element.example/',
      redirect_uris: [target.uri],
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    });
    /** The client's redirect target: its query, and no trace of the fragment. */
    const landed = (url, state) => {
      assert.ok(url.startsWith(target.uri), `at the client's redirect_uri: ${url}`);
      assert.ok(!carries(url), `the IdP's fragment did not reach the client: ${url}`);
      const u = new URL(url);
      assert.equal(u.hash, '', `no fragment at the client: ${url}`);
      assert.equal(u.searchParams.get('state'), state, 'state in the query (response_mode=query)');
      assert.equal(u.searchParams.get('iss'), server.issuer, 'iss in the query (RFC 9207)');
      return u.searchParams;
    };

    // 1. Sign in through the IdP and allow: the code comes back in the
    // query; nothing after our callback saw the IdP's fragment.
    const oauth = new OAuth2(metadata, { clientId, deviceId: 'FRAGMENTDEV1' });
    const context = await browser.newContext();
    const page = await context.newPage();
    let hops = await recordHops(page);
    const committed = [];
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) committed.push(f.url()); });
    const state1 = randomBytes(8).toString('hex');
    const authUrl = await oauth.generateAuthorizationCodeGrantUrl(state1, target.uri, 'query');
    const signedIn = await signInAtIdp(page, { startUrl: authUrl, idp, login: dana.sub });
    signedIn.done();
    assert.ok(signedIn.linkStatuses.length > 0 && signedIn.linkStatuses.every((s) => s === 303), `the link page only redirected: ${signedIn.linkStatuses}`);
    const back = await approveConsent(page, target.uri, `${engine}-fragment-consent`);
    let after = afterCallback(hops);
    for (const h of after) assert.ok(!carries(h.url), `no hop after our callback carries the IdP's fragment: ${h.method} ${h.url}`);
    const consentPage = committed.find((u) => ours(u) && new URL(u).pathname.startsWith('/consent/'));
    assert.ok(consentPage && !carries(consentPage), `our consent page without the fragment: ${consentPage}`);
    const code = landed(back, state1).get('code');
    assert.ok(code, 'a code in the query');
    const tokens = await oauth.completeAuthorizationCodeGrant(code, target.uri);
    assert.ok(tokens.access_token.startsWith('mat_'), 'the code is good');
    const who = await sdk.createClient({ baseUrl: stack.synapse.url, accessToken: tokens.access_token }).whoami();
    assert.equal(who.user_id, `@${dana.preferred_username}:localhost`);

    // 2. Redirects only from the IdP to the client: a request for the
    // admin scope, which Dana may not have, is refused by our consent page
    // without a form (an `access_denied` redirect). No form POST on our
    // side drops the inherited fragment on the way.
    const context2 = await browser.newContext();
    const page2 = await context2.newPage();
    hops = await recordHops(page2);
    const oauth2 = new OAuth2(metadata, { clientId, deviceId: 'FRAGMENTDEV2' });
    const state2 = randomBytes(8).toString('hex');
    const adminUrl = await oauth2.generateAuthorizationCodeGrantUrl(state2, target.uri, 'query', undefined,
      'openid urn:matrix:client:api:* urn:matrix:client:device:FRAGMENTDEV2 urn:synapse:admin:*');
    await signInAtIdp(page2, { startUrl: adminUrl, idp, login: dana.sub });
    after = afterCallback(hops);
    assert.ok(after.length >= 2 && after.every((h) => h.method === 'GET'), `only redirects after our callback: ${JSON.stringify(after)}`);
    for (const h of after) assert.ok(!carries(h.url), `no hop after our callback carries the IdP's fragment: ${h.method} ${h.url}`);
    assert.equal(landed(page2.url(), state2).get('error'), 'access_denied');
    await context2.close();

    // 3. The client's own Location ends with `#` too, whatever fragment the
    // browser holds: Dana is signed in here and has allowed this client, so
    // `prompt=none` answers with a code at once (one redirect), here from an
    // authorization URL that carries `#_=_`.
    hops = await recordHops(page);
    const oauth3 = new OAuth2(metadata, { clientId, deviceId: 'FRAGMENTDEV3' });
    const state3 = randomBytes(8).toString('hex');
    const silentUrl = await oauth3.generateAuthorizationCodeGrantUrl(state3, target.uri, 'query', 'none');
    await page.goto(`${silentUrl}#${FRAGMENT}`);
    assert.equal(new URL(hops[0].url).hash, `#${FRAGMENT}`, `the authorization request held the fragment: ${hops[0].url}`);
    assert.equal(hops.length, 2, `one redirect, to the client: ${JSON.stringify(hops)}`);
    const silent = landed(page.url(), state3);
    assert.equal(silent.get('error'), null, `no error: ${page.url()}`);
    await oauth3.completeAuthorizationCodeGrant(silent.get('code'), target.uri);
    await context.close();
  } catch (e) {
    console.error(stack.logs());
    throw e;
  } finally {
    await browser.close();
    await target.close();
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the IdP's own URL fragment never reaches the client's redirect_uri (SQLite)", { skip }, () => upstreamFragment('sqlite'));
test("the IdP's own URL fragment never reaches the client's redirect_uri (PostgreSQL)", { skip }, () => upstreamFragment('postgres'));

// Done-when 3: an ID token with only `sub`.
// The registration page asks the homeserver whether the localpart is free
// (is_localpart_available), so the registering stack has real Synapse.
test('claims only at userinfo: fetch_userinfo imports them, without it the required localpart refuses', { skip }, async () => {
  const browser = await launchChromium();
  const withUserinfo = await startUpstreamStack({ idTokenClaims: false, addLines: ['fetch_userinfo: true'] });
  const seedAsIs = await startUpstreamStack({ synapse: false, idTokenClaims: false });
  try {
    const dana = USERS.dana;
    // With fetch_userinfo: the registration page is pre-filled.
    let context = await browser.newContext();
    let page = await context.newPage();
    await signInAtIdp(page, { startUrl: new URL('login', withUserinfo.server.issuer).toString(), idp: withUserinfo.idp, login: dana.sub });
    await page.locator('h1', { hasText: 'Create your account' }).waitFor();
    await shot(page, 'userinfo-register');
    assert.equal((await page.locator('#localpart').textContent()).trim(), dana.preferred_username);
    assert.equal(await page.locator('input[name=displayname]').inputValue(), dana.name);
    assert.match(await page.content(), new RegExp(dana.email.replace('.', '\\.')));
    assert.equal((await page.locator('.attribute').textContent()).trim(), dana.tenant_id);
    // A callback whose state is not one this browser started is refused.
    const forged = await page.goto(new URL(`upstream/callback/${PROVIDER_ID}?code=forged&state=not-ours`, withUserinfo.server.issuer).toString());
    assert.equal(forged.status(), 400, 'state mismatch refused');
    await context.close();

    // The seed as is (no fetch_userinfo): the ID token has no
    // preferred_username, which the seed `require`s → refused, nothing made.
    context = await browser.newContext();
    page = await context.newPage();
    const usersBefore = seedAsIs.server.sql('SELECT COUNT(*) FROM users');
    const refusal = page.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/upstream/link/'));
    await signInAtIdp(page, { startUrl: new URL('login', seedAsIs.server.issuer).toString(), idp: seedAsIs.idp, login: dana.sub });
    assert.equal((await refusal).status(), 403);
    const text = await page.locator('[role=alert]').textContent();
    assert.match(text, /did not send `preferred_username`, which this service requires/);
    assert.match(text, /No account was created/);
    await shot(page, 'missing-claim-refused');
    assert.equal(await page.locator('form[method=post]').count(), 0, 'no registration form');
    assert.equal(seedAsIs.server.sql('SELECT COUNT(*) FROM users'), usersBefore, 'nothing created');
    assert.equal(seedAsIs.server.sql("SELECT COUNT(*) FROM upstream_links WHERE user_id IS NOT NULL"), '0');
    await context.close();
  } catch (e) {
    console.error(withUserinfo.logs());
    console.error(seedAsIs.logs());
    throw e;
  } finally {
    await browser.close();
    await withUserinfo.stop();
    await seedAsIs.stop();
  }
});

// Done-when 5: back-channel logout from the IdP with logout_all.
test('back-channel logout at the IdP ends our sessions and the device on Synapse', { skip }, async () => {
  const stack = await startUpstreamStack({ backchannel: true, addLines: ['on_backchannel_logout: logout_all'] });
  const { server, synapse, idp } = stack;
  const target = await startRedirectTarget();
  const browser = await launchChromium();
  try {
    const dana = USERS.dana;
    // Device 1: registered in this browser (IdP session 1).
    const m = await matrixClient(synapse.url, target.uri, 'BCLDEVICE1');
    const context = await browser.newContext();
    const page = await context.newPage();
    await signInAtIdp(page, { startUrl: m.authUrl, idp, login: dana.sub });
    await Promise.all([page.waitForNavigation(), page.locator('button[type=submit]', { hasText: 'Create account' }).click()]);
    const { client } = await m.finish(await approveConsent(page, target.uri));
    assert.equal((await client.whoami()).device_id, 'BCLDEVICE1');
    // Device 2: the same person in another browser (IdP session 2); it
    // must survive the logout of session 1.
    const m2 = await matrixClient(synapse.url, target.uri, 'BCLDEVICE2');
    const context2 = await browser.newContext();
    const page2 = await context2.newPage();
    await signInAtIdp(page2, { startUrl: m2.authUrl, idp, login: dana.sub });
    const { client: client2 } = await m2.finish(await approveConsent(page2, target.uri));
    const ids = async () => (await client2.getDevices()).devices.map((d) => d.device_id).sort();
    assert.deepEqual(await ids(), ['BCLDEVICE1', 'BCLDEVICE2']);
    const active = (table) => server.sql(`SELECT COUNT(*) FROM ${table} s JOIN users u ON u.id = s.user_id WHERE u.username = 'dana' AND s.finished_at IS NULL`);
    assert.equal(active('browser_sessions'), '2');
    assert.equal(active('oauth2_sessions'), '2');

    // The user signs out at the IdP in browser 1.
    await page.goto(new URL('session/end', idp.issuer).toString());
    const yes = page.locator('button[name=logout][value=yes]');
    await yes.waitFor();
    await shot(page, 'idp-logout');
    await Promise.all([page.waitForNavigation(), yes.click()]);

    await eventually('Synapse refuses the token of device 1', async () => {
      try { await client.whoami(); return false; } catch (e) { return e.httpStatus === 401; }
    });
    assert.deepEqual(await eventually('device 1 gone from Synapse', async () => {
      const d = await ids();
      return d.length === 1 ? d : undefined;
    }), ['BCLDEVICE2']);
    assert.equal(active('browser_sessions'), '1', 'the browser session of that IdP session ended');
    assert.equal(active('oauth2_sessions'), '1', 'logout_all ended its app session');
    assert.equal((await client2.whoami()).device_id, 'BCLDEVICE2', 'the other IdP session is untouched');
    await context.close();
    await context2.close();
  } catch (e) {
    console.error(stack.logs());
    throw e;
  } finally {
    await browser.close();
    await target.close();
    await stack.stop();
  }
});

// Done-when 6: the bulk import, and an imported IdP user's first login.
async function importFlow(engine) {
  const stack = await startUpstreamStack({ engine });
  const { server, synapse, idp } = stack;
  const dir = mkdtempSync(join(tmpdir(), 'vestibule-e2e-import-'));
  const target = await startRedirectTarget();
  const browser = await launchChromium();
  try {
    const carol = USERS.carol;
    const lines = ['localpart,email,displayname,provider_id,subject,tenant_id'];
    // Line 2: the IdP's carol, under another localpart than her
    // preferred_username.
    lines.push(`carol.imported,${carol.email},Carol Imported,${PROVIDER_ID},${carol.sub},${carol.tenant_id}`);
    const invalid = new Map([
      [101, 'Not Valid,x@corp.example,X,,,t'], // bad localpart
      [2002, 'user02002,not-an-email,X,,,t'], // bad email
      [5003, 'user00010,dup@corp.example,X,,,t'], // localpart of line 11
      [7004, 'user07004,u7004@corp.example,X,01ZZZZZZZZZZZZZZZZZZZZZZZZ,s7004,t'], // unknown provider
      [9005, 'user09005,u9005@corp.example'], // wrong number of fields
    ]);
    for (let line = 3; line <= 10_001; line += 1) {
      if (invalid.has(line)) { lines.push(invalid.get(line)); continue; }
      const n = String(line - 1).padStart(5, '0');
      lines.push(`user${n},user${n}@corp.example,"User ${n}, Imported",${PROVIDER_ID},subject-${n},tenant-${line % 7}`);
    }
    assert.equal(lines.length, 10_001, '10 000 rows and a header');
    const file = join(dir, 'users.csv');
    writeFileSync(file, `${lines.join('\n')}\n`);

    const importUsers = () => {
      const t0 = performance.now();
      const r = spawnSync(BIN, [...server.configArgs, 'manage', 'import-users', file], { env: server.env, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
      return { ...r, seconds: (performance.now() - t0) / 1000 };
    };
    const first = importUsers();
    console.log(`import-users, first run (10 000 rows, ${server.engine}): ${first.seconds.toFixed(2)} s`);
    assert.equal(first.status, 1, `some rows are invalid: ${first.stderr}`);
    for (const line of invalid.keys()) assert.match(first.stderr, new RegExp(`line ${line}: skipped`), `line ${line} reported`);
    assert.equal(first.stderr.match(/line \d+: skipped/g).length, invalid.size, `only the invalid rows: ${first.stderr}`);
    assert.match(first.stdout, /9995 created, 0 updated, 0 unchanged, 5 invalid/);

    const second = importUsers();
    console.log(`import-users, second run (10 000 rows, all unchanged, ${server.engine}): ${second.seconds.toFixed(2)} s`);
    assert.equal(second.status, 1);
    assert.match(second.stdout, /0 created, 0 updated, 9995 unchanged, 5 invalid; nothing changed/);
    assert.doesNotMatch(second.stdout, /^(created|updated) /m);
    assert.equal(server.sql("SELECT COUNT(*) FROM users WHERE username LIKE 'user%' OR username = 'carol.imported'"), '9995');

    // The running server's worker provisions the imported user on Synapse
    // (her row is first, so her job is among the first).
    await eventually('carol.imported provisioned on Synapse', async () => {
      const u = await queryUser(stack, 'carol.imported');
      return u.status === 200 && u.body.display_name === 'Carol Imported';
    }, 60_000);

    // Her first upstream login goes straight into the imported account.
    const m = await matrixClient(synapse.url, target.uri, 'IMPORTEDDEV');
    const context = await browser.newContext();
    const page = await context.newPage();
    const signedIn = await signInAtIdp(page, { startUrl: m.authUrl, idp, login: carol.preferred_username });
    const back = await approveConsent(page, target.uri, 'imported-consent');
    signedIn.done();
    assert.ok(signedIn.linkStatuses.length > 0 && signedIn.linkStatuses.every((s) => s === 303), `no registration page: ${signedIn.linkStatuses}`);
    const { client } = await m.finish(back);
    assert.equal((await client.whoami()).user_id, '@carol.imported:localhost');
    assert.equal(server.sql("SELECT COUNT(*) FROM users WHERE username = 'carol'"), '0', 'no account from preferred_username');
    assert.equal(server.sql("SELECT a.value FROM user_attributes a JOIN users u ON u.id = a.user_id WHERE u.username = 'carol.imported' AND a.name = 'tenant_id'"), carol.tenant_id);
    await context.close();
  } catch (e) {
    console.error(stack.logs().slice(-20000));
    throw e;
  } finally {
    await browser.close();
    await target.close();
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('import-users: 10 000 rows, invalid rows by line, idempotent, imported IdP user lands in their account (SQLite)', { skip }, () => importFlow('sqlite'));
test('import-users: 10 000 rows, invalid rows by line, idempotent, imported IdP user lands in their account (PostgreSQL)', { skip }, () => importFlow('postgres'));
