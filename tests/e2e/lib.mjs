// Helpers for the end-to-end tests: run the real `vestibule` binary, talk to
// it over HTTP like a browser would (cookie jar, HTML forms), and clean up.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import assert from 'node:assert/strict';

export const BIN = process.env.VESTIBULE_BIN ?? 'vestibule';
export const PG_URL = process.env.VESTIBULE_TEST_POSTGRES_URL;

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function run(args, opts = {}) {
  return execFileSync(BIN, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...opts });
}

function psql(sql) {
  execFileSync('psql', ['-X', '-q', '-d', PG_URL, '-c', sql], { stdio: 'pipe' });
}

const ROOMY = '{ burst: 1000000, per_second: 1000 }';
export const RELAXED_RATE_LIMITS = `
rate_limiting:
  login:
    per_ip: ${ROOMY}
    per_account: ${ROOMY}
  registration: ${ROOMY}
  device_code_link: ${ROOMY}
  account_recovery:
    per_ip: ${ROOMY}
    per_address: ${ROOMY}
  email_authentication:
    per_ip: ${ROOMY}
    per_address: ${ROOMY}
    emails_per_session: ${ROOMY}
    attempt_per_session: ${ROOMY}
`;

/**
 * A running vestibule on a free port, on SQLite or PostgreSQL, with one user.
 * Returns { issuer, config, matrixSecret, stop() }.
 */
export async function startVestibule({ engine, username = 'alice', password = 'correct horse battery staple', port: fixedPort, matrix, extraYaml, env: extraEnv = {} }) {
  const dir = mkdtempSync(join(tmpdir(), `vestibule-e2e-${engine}-`));
  const port = fixedPort ?? await freePort();
  const config = join(dir, 'config.yaml');
  run(['config', 'generate', '-o', config]);
  // A second config file merged over the generated one (e.g. an
  // `upstream_oauth2` section), and the environment its `${VAR}`s need.
  const configArgs = ['-c', config];
  if (extraYaml) {
    const extra = join(dir, 'extra.yaml');
    writeFileSync(extra, extraYaml);
    configArgs.push('-c', extra);
  }
  const env = { ...process.env, ...extraEnv };
  const cli = (args, opts = {}) => run([...configArgs, ...args], { env, ...opts });
  let dbName = null;
  let uri;
  if (engine === 'postgres') {
    if (!PG_URL) throw new Error('VESTIBULE_TEST_POSTGRES_URL is not set');
    dbName = `vestibule_test_e2e_${process.pid}_${Date.now()}`;
    psql(`CREATE DATABASE "${dbName}"`);
    const u = new URL(PG_URL);
    u.pathname = `/${dbName}`;
    uri = u.toString();
  } else {
    uri = `sqlite://${join(dir, 'vestibule.db')}`;
  }
  let yaml = readFileSync(config, 'utf8');
  yaml = yaml
    .replace(/uri: .*/, `uri: ${uri}`)
    .replace(/address: 127\.0\.0\.1:8080/, `address: 127.0.0.1:${port}`)
    .replace(/public_base: .*/, `public_base: http://127.0.0.1:${port}/`);
  if (matrix) {
    yaml = yaml
      .replace(/homeserver: .*/, `homeserver: ${matrix.homeserver}`)
      .replace(/endpoint: .*/, `endpoint: ${matrix.endpoint}`);
    if (matrix.secret) yaml = yaml.replace(/(matrix:[\s\S]*?secret: )[0-9a-f]{64}/, `$1${matrix.secret}`);
  }
  // The tests sign in many times from 127.0.0.1: roomy limits here only
  // (the defaults stay MAS's). `burst`/`per_second` of every limiter.
  if (!/^rate_limiting:/m.test(yaml)) yaml += RELAXED_RATE_LIMITS;
  writeFileSync(config, yaml);
  const matrixSecret = /secret: ([0-9a-f]{64})/.exec(yaml.split('matrix:')[1])[1];
  cli(['database', 'migrate']);
  cli(['manage', 'register-user', username, '--password', password]);

  const child = spawn(BIN, [...configArgs, 'server'], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not ready in 30 s:\n${stdout}\n${stderr}`)), 30_000);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (/^Ready$/m.test(stdout)) { clearTimeout(timer); resolve(); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${stdout}\n${stderr}`)); });
  });
  const issuer = `http://127.0.0.1:${port}/`;
  return {
    issuer,
    config,
    configArgs,
    env,
    engine,
    matrixSecret,
    username,
    password,
    /** Runs the CLI with this server's config files and environment. */
    cli,
    /** One SQL query against the server's database; rows as text, `|`-separated. */
    sql(query) {
      if (engine === 'postgres') return execFileSync('psql', ['-X', '-q', '-A', '-t', '-d', uri, '-c', query], { encoding: 'utf8' }).trim();
      return execFileSync('sqlite3', [uri.replace(/^sqlite:\/\//, ''), query], { encoding: 'utf8' }).trim();
    },
    logs: () => `${stdout}\n${stderr}`,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const code = await exited;
      if (dbName) psql(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A fetch that keeps cookies like a browser and never follows redirects. */
export class Browser {
  constructor() { this.cookies = new Map(); }

  async fetch(url, init = {}) {
    const headers = new Headers(init.headers ?? {});
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const expired = attrs.some((a) => /max-age=0/i.test(a.trim())) || value === '';
      if (expired) this.cookies.delete(name); else this.cookies.set(name, value);
    }
    return res;
  }

  /** Follows redirects while they stay on `origin`; returns the last response and its URL. */
  async follow(url, stopAt) {
    let current = url;
    for (let i = 0; i < 10; i += 1) {
      const res = await this.fetch(current);
      const loc = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && loc) {
        const next = new URL(loc, current).toString();
        if (stopAt && next.startsWith(stopAt)) return { res, url: next };
        current = next;
        continue;
      }
      return { res, url: current, body: await res.text() };
    }
    throw new Error('too many redirects');
  }
}

function decode(s) {
  return s.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
}

/** Every <form> of a page: its action, method and fields (inputs and buttons). */
export function forms(html, base) {
  const out = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attr = (a, n) => (new RegExp(`${n}\\s*=\\s*"([^"]*)"`, 'i').exec(a) ?? [])[1];
    const fields = [];
    for (const f of m[2].matchAll(/<(input|button)\b([^>]*)>/gi)) {
      fields.push({ tag: f[1].toLowerCase(), type: (attr(f[2], 'type') ?? '').toLowerCase(), name: attr(f[2], 'name'), value: decode(attr(f[2], 'value') ?? '') });
    }
    const text = decode(m[2].replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
    out.push({ action: new URL(decode(attr(m[1], 'action') ?? ''), base).toString(), method: (attr(m[1], 'method') ?? 'get').toLowerCase(), fields, text });
  }
  return out;
}

/** Submits a form: hidden inputs kept, `values` override, one submit button chosen by value/name. */
export async function submit(browser, form, values = {}, button) {
  const body = new URLSearchParams();
  for (const f of form.fields) {
    if (!f.name) continue;
    if (f.tag === 'button' || f.type === 'submit') continue;
    if (f.name in values) continue;
    body.append(f.name, f.value);
  }
  for (const [k, v] of Object.entries(values)) body.append(k, v);
  if (button) {
    const b = form.fields.find((f) => (f.tag === 'button' || f.type === 'submit') && f.name && (button.test(f.value) || button.test(f.name)));
    if (b) body.append(b.name, b.value);
  }
  return browser.fetch(form.action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(form.action).origin },
    body: body.toString(),
  });
}

/** Logs in and consents through the HTML pages with a plain HTTP "browser". */
export async function loginWithHttp(server, authUrl, redirectUri, browser = new Browser()) {
  let { res, url, body } = await browser.follow(authUrl.toString(), redirectUri);
  assert.equal(res.status, 200, `login page: ${body}`);
  const login = forms(body, url).find((f) => f.fields.some((x) => x.type === 'password'));
  assert.ok(login, `a login form with a password field:\n${body}`);
  const userField = login.fields.find((x) => x.name && /user|login|name/i.test(x.name) && x.type !== 'password' && x.type !== 'hidden');
  const passField = login.fields.find((x) => x.type === 'password');
  res = await submit(browser, login, { [userField.name]: server.username, [passField.name]: server.password });
  assert.equal(res.status, 303, 'login POST answers 303 See Other (RFC 9700 §4.12)');
  ({ res, url, body } = await browser.follow(new URL(res.headers.get('location'), url).toString(), redirectUri));
  if (res.status === 200) {
    // The form that grants (not the one that cancels): by its button text or
    // a field value.
    const grants = (f) => /\b(allow|accept|consent)\b/i.test(f.text) || f.fields.some((x) => /^(allow|accept|consent)$/i.test(x.value));
    const consent = forms(body, url).find((f) => f.method === 'post' && grants(f));
    assert.ok(consent, `a consent form:\n${body}`);
    res = await submit(browser, consent, {}, /allow|consent|accept|continue/i);
    assert.equal(res.status, 303, 'consent POST answers 303 See Other');
    url = new URL(res.headers.get('location'), url).toString();
  }
  assert.ok(url.startsWith(redirectUri), `redirected to the client: ${url}`);
  return new URL(url);
}


/**
 * Synapse (from the venv in VESTIBULE_SYNAPSE_VENV) with
 * `matrix_authentication_service` pointing at `vestibuleUrl`. Synapse merges
 * several config files, later ones overriding top-level keys, so the
 * generated config stays untouched and the test's settings go on top.
 */
export async function startSynapse({ port, vestibuleUrl, secret, serverName = 'localhost' }) {
  const venv = process.env.VESTIBULE_SYNAPSE_VENV;
  if (!venv) throw new Error('VESTIBULE_SYNAPSE_VENV is not set (scripts/synapse.sh installs Synapse)');
  const python = join(venv, 'bin', 'python');
  const dir = mkdtempSync(join(tmpdir(), 'vestibule-e2e-synapse-'));
  const base = join(dir, 'homeserver.yaml');
  execFileSync(python, ['-m', 'synapse.app.homeserver', '--server-name', serverName, '--config-path', base,
    '--data-directory', dir, '--generate-config', '--report-stats=no'], { cwd: dir, stdio: 'pipe' });
  const overrides = join(dir, 'test.yaml');
  writeFileSync(overrides, `
listeners:
  - port: ${port}
    bind_addresses: ['127.0.0.1']
    type: http
    x_forwarded: false
    resources: [{names: [client], compress: false}]
public_baseurl: http://127.0.0.1:${port}/
trusted_key_servers: []
suppress_key_server_warning: true
serve_client_wellknown: true
password_config: {enabled: false}
background_updates: {sleep_enabled: false}
database: {name: sqlite3, args: {database: ${join(dir, 'homeserver.db')}}}
matrix_authentication_service:
  enabled: true
  endpoint: "${vestibuleUrl}"
  secret: "${secret}"
rc_message: {per_second: 1000, burst_count: 1000}
rc_login: {address: {per_second: 1000, burst_count: 1000}, account: {per_second: 1000, burst_count: 1000}}
`);
  const log = join(dir, 'synapse.out');
  const child = spawn(python, ['-m', 'synapse.app.homeserver', '--config-path', base, '--config-path', overrides],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const url = `http://127.0.0.1:${port}/`;
  // Synapse has no readiness signal on stdout: poll its health endpoint (a
  // bounded wait on an external process), failing with its log.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`synapse exited (${child.exitCode}):\n${output}`);
    try {
      const r = await fetch(new URL('health', url));
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`synapse not healthy in 60 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    logs: () => output,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
      await exited;
      writeFileSync(log, output);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * nginx in front of both, as MAS documents it for operators: the legacy
 * login endpoints (`/login`, `/logout`, `/refresh`, their sub-paths) go to
 * vestibule, everything else under `/_matrix` to Synapse. Run in the
 * foreground from a temporary prefix; Debian's `nginx` package.
 */
export async function startProxy({ port, synapseUrl, vestibuleUrl }) {
  const dir = mkdtempSync(join(tmpdir(), 'vestibule-e2e-nginx-'));
  const up = (u) => new URL(u).host;
  writeFileSync(join(dir, 'nginx.conf'), `
daemon off;
user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location ~ ^/_matrix/client/(r0|v3)/(login|logout|refresh) {
      proxy_pass http://${up(vestibuleUrl)};
      # vestibule's redirects already name its public_base; nginx must not
      # rewrite them to the proxy's address (its default when public_base
      # happens to equal the upstream address, as in this test).
      proxy_redirect off;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
    location / {
      proxy_pass http://${up(synapseUrl)};
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`);
  const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr.on('data', (d) => { output += d; });
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}):\n${output}`);
    try {
      await fetch(url);
      break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`nginx not up in 20 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGQUIT');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Vestibule + Synapse + nginx, wired together. */
export async function startStack({ engine = 'sqlite', vestibulePort: fixedPort, extraYaml, env } = {}) {
  const { randomBytes } = await import('node:crypto');
  const synapsePort = await freePort();
  const vestibulePort = fixedPort ?? await freePort();
  const proxyPort = await freePort();
  const secret = randomBytes(32).toString('hex');
  const server = await startVestibule({
    engine,
    port: vestibulePort,
    extraYaml,
    env,
    matrix: { homeserver: 'localhost', endpoint: `http://127.0.0.1:${synapsePort}/`, secret },
  });
  let synapse;
  let proxy;
  try {
    synapse = await startSynapse({ port: synapsePort, vestibuleUrl: server.issuer, secret });
    proxy = await startProxy({ port: proxyPort, synapseUrl: synapse.url, vestibuleUrl: server.issuer });
  } catch (e) {
    await synapse?.stop();
    await server.stop();
    throw e;
  }
  return {
    server,
    synapse,
    proxy,
    logs: () => `${server.logs()}\n--- synapse ---\n${synapse.logs().slice(-4000)}`,
    async stop() {
      await proxy.stop();
      await synapse.stop();
      return server.stop();
    },
  };
}

/**
 * The organisation's IdP: `idp.mjs` (oidc-provider 9) with this JSON config
 * (see its header). Ready once it printed its issuer.
 */
export async function startIdp(config) {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'idp.mjs'), JSON.stringify(config)],
    { cwd: import.meta.dirname, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const issuer = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`idp not ready in 20 s:\n${stderr}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) { clearTimeout(timer); resolve(JSON.parse(out.slice(0, nl)).issuer); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`idp exited (${code}):\n${stderr}`)); });
  });
  return {
    issuer,
    logs: () => stderr,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
