// Legacy clients (flow 4) through a real reverse proxy (nginx) in front of
// real Synapse and vestibule, with matrix-js-sdk's legacy login API:
// password login with refresh tokens, then the m.login.sso round trip
// through our pages and m.login.token. Every token is then used on Synapse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as sdk from 'matrix-js-sdk';
import { Browser, forms, submit, startStack } from './lib.mjs';

Promise.withResolvers ??= function withResolvers() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
};

// Skipped only for local runs without Synapse; when VESTIBULE_REQUIRE_SYNAPSE is
// set (scripts/test.sh, CI) a missing Synapse fails the test instead.
const skip = !process.env.VESTIBULE_SYNAPSE_VENV && !process.env.VESTIBULE_REQUIRE_SYNAPSE && 'VESTIBULE_SYNAPSE_VENV not set';

async function passwordFlow(engine) {
  const stack = await startStack({ engine });
  const { server, proxy } = stack;
  try {
    const client = sdk.createClient({ baseUrl: proxy.url });
    const flows = await client.loginFlows();
    const types = flows.flows.map((f) => f.type);
    assert.ok(types.includes('m.login.password') && types.includes('m.login.sso') && types.includes('m.login.token'), JSON.stringify(flows));
    const sso = flows.flows.find((f) => f.type === 'm.login.sso');
    assert.equal(sso.oauth_aware_preferred, true, 'MSC3824');

    const res = await client.login('m.login.password', {
      identifier: { type: 'm.id.user', user: server.username },
      password: server.password,
      initial_device_display_name: 'legacy e2e',
      refresh_token: true,
    });
    assert.ok(res.access_token.startsWith('mct_'));
    assert.ok(res.refresh_token.startsWith('mcr_'));
    assert.ok(res.expires_in_ms > 0);
    assert.equal(res.user_id, `@${server.username}:localhost`);

    const authed = sdk.createClient({ baseUrl: proxy.url, accessToken: res.access_token, deviceId: res.device_id, userId: res.user_id });
    const who = await authed.whoami();
    assert.equal(who.user_id, res.user_id, 'the compat token works on Synapse');
    assert.equal(who.device_id, res.device_id);

    const refreshed = await authed.refreshToken(res.refresh_token);
    assert.notEqual(refreshed.access_token, res.access_token);
    const again = sdk.createClient({ baseUrl: proxy.url, accessToken: refreshed.access_token, deviceId: res.device_id, userId: res.user_id });
    assert.equal((await again.whoami()).device_id, res.device_id);

    await again.logout();
    await assert.rejects(again.whoami(), (e) => e.httpStatus === 401, 'Synapse refuses the token after logout');
    // A wrong password: a Matrix-shaped error through the proxy.
    await assert.rejects(
      client.login('m.login.password', { identifier: { type: 'm.id.user', user: server.username }, password: 'wrong password!' }),
      (e) => e.httpStatus === 403 && e.errcode === 'M_FORBIDDEN',
    );
  } catch (e) {
    console.error(stack.logs());
    throw e;
  } finally {
    await stack.stop();
  }
}


test('legacy password login, refresh and logout through nginx, SQLite', { skip }, () => passwordFlow('sqlite'));
test('legacy password login, refresh and logout through nginx, PostgreSQL', { skip }, () => passwordFlow('postgres'));

async function ssoFlow(engine) {
  const stack = await startStack({ engine });
  const { server, proxy } = stack;
  try {
    const redirectUrl = 'https://app.example.org/after-sso';
    const browser = new Browser();
    let { res, url, body } = await browser.follow(
      new URL(`_matrix/client/v3/login/sso/redirect?redirectUrl=${encodeURIComponent(redirectUrl)}`, proxy.url).toString(),
      redirectUrl,
    );
    const login = forms(body, url).find((f) => f.fields.some((x) => x.type === 'password'));
    assert.ok(login, `our login page:\n${body}`);
    res = await submit(browser, login, { username: server.username, password: server.password });
    assert.equal(res.status, 303);
    ({ res, url, body } = await browser.follow(new URL(res.headers.get('location'), url).toString(), redirectUrl));
    assert.equal(res.status, 200, 'the approval page');
    assert.ok(body.includes('app.example.org'), 'it names where the login goes');
    const approve = forms(body, url).find((f) => f.method === 'post');
    res = await submit(browser, approve);
    assert.equal(res.status, 303);
    const back = new URL(res.headers.get('location'));
    assert.equal(`${back.origin}${back.pathname}`, redirectUrl);
    const loginToken = back.searchParams.get('loginToken');
    assert.ok(loginToken);

    const client = sdk.createClient({ baseUrl: proxy.url });
    const done = await client.login('m.login.token', { token: loginToken });
    const authed = sdk.createClient({ baseUrl: proxy.url, accessToken: done.access_token, deviceId: done.device_id, userId: done.user_id });
    assert.equal((await authed.whoami()).user_id, `@${server.username}:localhost`);
    await assert.rejects(client.login('m.login.token', { token: loginToken }), (e) => e.httpStatus === 403, 'single use');
  } catch (e) {
    console.error(stack.logs());
    throw e;
  } finally {
    await stack.stop();
  }
}

test('legacy SSO: sso/redirect, our pages, loginToken, m.login.token, SQLite', { skip }, () => ssoFlow('sqlite'));
test('legacy SSO: sso/redirect, our pages, loginToken, m.login.token, PostgreSQL', { skip }, () => ssoFlow('postgres'));
