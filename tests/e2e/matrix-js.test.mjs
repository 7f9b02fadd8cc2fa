// matrix-js-sdk 43 (the engine of Element Web; stable scopes,
// response_mode=fragment) logs in through real Synapse delegating to a
// running vestibule: discovery through Synapse's auth_metadata, dynamic
// registration, our login and consent pages, token, whoami through Synapse,
// a room and a message, refresh, logout — after which Synapse refuses the
// old access token at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as sdk from 'matrix-js-sdk';
import { OAuth2 } from 'matrix-js-sdk/lib/oauth/index.js';
import { loginWithHttp, startVestibule, startSynapse, startStack, freePort, run } from './lib.mjs';

// matrix-js-sdk 43 targets Node 22 and uses Promise.withResolvers when
// sending events; this machine has Node 20 (PEERS.md: it installs with
// EBADENGINE warnings). A standard-conforming polyfill keeps it working.
Promise.withResolvers ??= function withResolvers() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
};

async function jsSdkFlow(engine) {
  const synapsePort = await freePort();
  const vestibulePort = await freePort();
  const secret = randomBytes(32).toString('hex');
  const server = await startVestibule({
    engine,
    port: vestibulePort,
    matrix: { homeserver: 'localhost', endpoint: `http://127.0.0.1:${synapsePort}/`, secret },
  });
  const synapse = await startSynapse({ port: synapsePort, vestibuleUrl: server.issuer, secret });
  try {
    const anon = sdk.createClient({ baseUrl: synapse.url });
    const metadata = await anon.getAuthMetadata();
    assert.equal(metadata.issuer, server.issuer, 'Synapse serves our discovery document');

    const redirectUri = 'https://app.element.example/callback';
    const clientId = await OAuth2.registerClient(metadata, {
      client_name: 'Element Web (e2e)',
      client_uri: 'https://app.element.example/',
      redirect_uris: [redirectUri],
      application_type: 'web',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    });
    const deviceId = 'JSSDKDEVICE';
    const oauth = new OAuth2(metadata, { clientId, deviceId });
    const state = randomBytes(16).toString('hex');
    const authUrl = await oauth.generateAuthorizationCodeGrantUrl(state, redirectUri, 'fragment');
    const back = await loginWithHttp(server, new URL(authUrl), redirectUri);
    const params = new URLSearchParams(back.hash.slice(1));
    assert.equal(params.get('state'), state);
    assert.equal(params.get('iss'), server.issuer);
    const tokens = await oauth.completeAuthorizationCodeGrant(params.get('code'), redirectUri);

    const client = sdk.createClient({ baseUrl: synapse.url, accessToken: tokens.access_token, deviceId });
    const who = await client.whoami();
    assert.equal(who.user_id, `@${server.username}:localhost`);
    assert.equal(who.device_id, deviceId);
    const { room_id: roomId } = await client.createRoom({ name: 'e2e' });
    const sent = await client.sendTextMessage(roomId, 'hello from matrix-js-sdk');
    assert.ok(sent.event_id);

    const refreshed = await oauth.performRefreshTokenGrant(tokens.refresh_token);
    const client2 = sdk.createClient({ baseUrl: synapse.url, accessToken: refreshed.access_token, deviceId });
    assert.equal((await client2.whoami()).device_id, deviceId);

    // Logout: revoking ends the session and deletes the device, so Synapse
    // refuses the token at once despite its introspection cache.
    await oauth.revokeToken(refreshed.access_token, 'access_token');
    await assert.rejects(client2.whoami(), (e) => e.httpStatus === 401, 'Synapse refuses the revoked token');
  } catch (e) {
    console.error(server.logs());
    console.error(synapse.logs().slice(-4000));
    throw e;
  } finally {
    await synapse.stop();
    await server.stop();
  }
}

// Skipped only for local runs without Synapse; when VESTIBULE_REQUIRE_SYNAPSE is
// set (scripts/test.sh, CI) a missing Synapse fails the test instead.
const skip = !process.env.VESTIBULE_SYNAPSE_VENV && !process.env.VESTIBULE_REQUIRE_SYNAPSE && 'VESTIBULE_SYNAPSE_VENV not set';
test('matrix-js-sdk logs in through Synapse with next-gen auth, SQLite', { skip }, () => jsSdkFlow('sqlite'));
test('matrix-js-sdk logs in through Synapse with next-gen auth, PostgreSQL', { skip }, () => jsSdkFlow('postgres'));


// Deactivating a user in vestibule deactivates them in Synapse (through the
// durable job queue) and kills their tokens at once.
async function deactivationFlow(engine) {
  const stack = await startStack({ engine });
  const { server, synapse } = stack;
  try {
    const anon = sdk.createClient({ baseUrl: synapse.url });
    const metadata = await anon.getAuthMetadata();
    const redirectUri = 'https://app.element.example/callback';
    const clientId = await OAuth2.registerClient(metadata, {
      client_name: 'Element Web (e2e)', client_uri: 'https://app.element.example/', redirect_uris: [redirectUri],
      application_type: 'web', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none',
    });
    const oauth = new OAuth2(metadata, { clientId, deviceId: 'DEACTDEVICE' });
    const authUrl = await oauth.generateAuthorizationCodeGrantUrl('s1', redirectUri, 'fragment');
    const back = await loginWithHttp(server, new URL(authUrl), redirectUri);
    const tokens = await oauth.completeAuthorizationCodeGrant(new URLSearchParams(back.hash.slice(1)).get('code'), redirectUri);
    const client = sdk.createClient({ baseUrl: synapse.url, accessToken: tokens.access_token });
    assert.equal((await client.whoami()).user_id, `@${server.username}:localhost`);

    const queryUser = async () => {
      const r = await fetch(new URL(`_synapse/mas/query_user?localpart=${server.username}`, synapse.url), {
        headers: { authorization: `Bearer ${server.matrixSecret}` },
      });
      assert.equal(r.status, 200);
      return r.json();
    };
    assert.equal((await queryUser()).is_deactivated, false);

    run(['-c', server.config, 'manage', 'deactivate-user', server.username]);
    // The CLI ends the sessions in our database at once; Synapse learns it
    // through the delete_user job (which also removes the devices). The job is picked up by the running server's worker (it
    // polls every 5 s): wait for its outcome, bounded.
    const deadline = Date.now() + 30_000;
    let user = await queryUser();
    while (!user.is_deactivated && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      user = await queryUser();
    }
    assert.equal(user.is_deactivated, true, 'Synapse has the user deactivated');
    await assert.rejects(client.whoami(), (e) => e.httpStatus === 401, 'the token died with the account');
  } catch (e) {
    console.error(stack.logs());
    throw e;
  } finally {
    await stack.stop();
  }
}

test('deactivation reaches Synapse, SQLite', { skip }, () => deactivationFlow('sqlite'));
test('deactivation reaches Synapse, PostgreSQL', { skip }, () => deactivationFlow('postgres'));
