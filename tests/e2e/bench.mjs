// Benchmark (not a test): starts a release vestibule and prints requests per
// second and latency percentiles for discovery, introspection, code exchange
// and full password login. Usage: scripts/bench.sh (builds and runs this).
// wrk (Debian package) drives the GET/POST-only endpoints; the multi-step
// flows are driven from Node with a fixed concurrency.
import { execFileSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as client from 'openid-client';
import { Browser, startVestibule, freePort, loginWithHttp } from './lib.mjs';

const ENGINE = process.env.BENCH_ENGINE ?? 'sqlite';
const DURATION = process.env.BENCH_DURATION ?? '10s';
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);

function wrk(url, lua) {
  const args = ['-t2', '-c64', `-d${DURATION}`, '--latency'];
  if (lua) args.push('-s', lua);
  const out = execFileSync('wrk', [...args, url], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const pct = (p) => (new RegExp(`\\s${p}%\\s+([\\d.]+\\w+)`).exec(out) ?? [])[1];
  const non2xx = (/Non-2xx or 3xx responses: (\d+)/.exec(out) ?? [0, 0])[1];
  return { rps, p50: pct(50), p99: pct(99), non2xx: Number(non2xx) };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function measure(total, concurrency, fn) {
  const latencies = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      const t = performance.now();
      await fn(i);
      latencies.push(performance.now() - t);
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { rps: +(total / elapsed).toFixed(1), p50: `${percentile(latencies, 50).toFixed(2)}ms`, p99: `${percentile(latencies, 99).toFixed(2)}ms` };
}

const server = await startVestibule({ engine: ENGINE });
const results = {};
try {
  const port = await freePort();
  const redirectUri = `http://127.0.0.1:${port}/callback`;
  const config = await client.dynamicClientRegistration(new URL(server.issuer), {
    client_name: 'bench', client_uri: 'https://bench.example.org/', redirect_uris: [redirectUri],
    application_type: 'native', grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'none',
  }, client.None(), { execute: [client.allowInsecureRequests] });

  async function authUrl(extra = {}) {
    const verifier = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri, scope: 'openid urn:matrix:client:api:*',
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state: client.randomState(), ...extra,
    });
    return { url, verifier };
  }

  // One logged-in browser session; then codes come from prompt=none.
  const browser = new Browser();
  const first = await authUrl();
  const cb = await loginWithHttp(server, first.url, redirectUri, browser);
  const tokens = await client.authorizationCodeGrant(config, cb, { pkceCodeVerifier: first.verifier, expectedState: cb.searchParams.get('state') });

  results.discovery = wrk(new URL('.well-known/openid-configuration', server.issuer).toString());
  const dir = mkdtempSync(join(tmpdir(), 'bench-'));
  const lua = join(dir, 'introspect.lua');
  writeFileSync(lua, `wrk.method = "POST"\nwrk.body = "token=${tokens.access_token}"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nwrk.headers["Authorization"] = "Bearer ${server.matrixSecret}"\n`);
  results.introspection = wrk(new URL('oauth2/introspect', server.issuer).toString(), lua);

  // Code exchange: codes minted first (silent authorization), then exchanged.
  const N = Number(process.env.BENCH_CODES ?? 2000);
  const codes = [];
  for (let i = 0; i < N; i += 1) {
    const { url, verifier } = await authUrl({ prompt: 'none' });
    const { url: back } = await browser.follow(url.toString(), redirectUri);
    codes.push({ cb: new URL(back), verifier });
  }
  const tokenUrl = config.serverMetadata().token_endpoint;
  results.code_exchange = await measure(N, CONCURRENCY, async (i) => {
    const { cb: u, verifier } = codes[i];
    const res = await fetch(tokenUrl, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: u.searchParams.get('code'), redirect_uri: redirectUri, code_verifier: verifier, client_id: config.clientMetadata().client_id }),
    });
    if (res.status !== 200) throw new Error(`exchange ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  });

  const LOGINS = Number(process.env.BENCH_LOGINS ?? 100);
  results.password_login = await measure(LOGINS, Math.min(CONCURRENCY, 8), async () => {
    const { url } = await authUrl();
    await loginWithHttp(server, url, redirectUri, new Browser());
  });
} finally {
  await server.stop();
}
console.log(`vestibule benchmark (${ENGINE}, ${new Date().toISOString()})`);
console.table(results);
