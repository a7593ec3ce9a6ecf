// The shipped nats-server configurations: with the credentials `virtactors creds init`
// writes beside them they parse (nats-server -t), every one requires authentication,
// the cluster nodes authenticate their routes, and a server started from the single-node
// configuration enforces the roles.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, natsServerBinary } from '../../runtime/nats-server.js';
import { authFiles } from '../../bus/auth-files.js';
import { connectBus, permissionError, identityOf } from '../../bus/connection.js';
import { createCreds } from '../../bus/credentials.js';
import { loadAuthority, writePrivateFile } from '../../bus/auth-files.js';
import { subjectOf } from '../../bus/commands.js';

const etc = mkdtempSync(join(tmpdir(), 'vc-deploy-'));
const files = readdirSync('deploy').filter((f) => f.endsWith('.conf'));
for (const f of files) copyFileSync(join('deploy', f), join(etc, f));
const routes = ['127.0.0.1:6242', '127.0.0.1:6243', '127.0.0.1:6244'];
const init = execFileSync(process.execPath, ['dist/bin/virtactors.js', '--json', 'creds', 'init', join(etc, 'auth'), '--routes', routes.join(',')], { encoding: 'utf8' });
const auth = authFiles(join(etc, 'auth'));

afterAll(() => rmSync(etc, { recursive: true, force: true }));

describe('deploy/ configurations', () => {
  it('has a single node and a 3-node cluster', () => {
    expect(files.sort()).toEqual(['cluster-n0.conf', 'cluster-n1.conf', 'cluster-n2.conf', 'single-node.conf']);
    expect(JSON.parse(init)).toMatchObject({ created: true, files: [auth.serverConfig, auth.creds('host'), auth.creds('operator'), auth.clusterConfig] });
  });

  for (const file of files) {
    it(`${file} is valid with the credentials beside it, and requires them`, () => {
      const r = spawnSync(natsServerBinary(), ['-c', join(etc, file), '-t'], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(`${r.stdout}${r.stderr}`).toMatch(/is valid/);
      expect(readFileSync(join(etc, file), 'utf8')).toMatch(/^include "auth\/nats-auth\.conf"$/m);
    });
  }

  it('authenticates the routes between the cluster nodes', () => {
    const cluster = readFileSync(auth.clusterConfig, 'utf8');
    const password = /password: "([^"]+)"/.exec(cluster)![1]!;
    expect(password.length).toBeGreaterThanOrEqual(32);
    for (const r of routes) expect(cluster).toContain(`"nats-route://route:${password}@${r}"`);
    for (const f of files.filter((x) => x.startsWith('cluster-'))) {
      expect(readFileSync(join(etc, f), 'utf8')).toMatch(/cluster \{[^}]*include "auth\/cluster-auth\.conf"[^}]*\}/);
    }
  });

  it('a server started from single-node.conf refuses anonymous clients and enforces the roles', async () => {
    const port = await freePort();
    const conf = readFileSync(join(etc, 'single-node.conf'), 'utf8')
      .replace('127.0.0.1:4222', `127.0.0.1:${port}`)
      .replace('/var/lib/virtactors/nats', join(etc, 'data'));
    writeFileSync(join(etc, 'local.conf'), conf);
    const viewer = join(etc, 'auth', 'creds', 'viewer.creds');
    writePrivateFile(viewer, await createCreds(loadAuthority(auth.dir)!, 'viewer', 'viewer'));
    const { spawn } = await import('node:child_process');
    const server = spawn(natsServerBinary(), ['-c', join(etc, 'local.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        let log = '';
        server.stderr!.on('data', (d) => {
          log += d;
          if (log.includes('Server is ready')) resolve();
        });
        server.once('exit', (code) => reject(new Error(`nats-server exited with ${code}: ${log}`)));
      });
      const url = `nats://127.0.0.1:${port}`;
      await expect(connectBus({ servers: url })).rejects.toThrow(/Authorization Violation/);
      const nc = await connectBus({ servers: url, creds: viewer });
      const err = await nc.request(subjectOf('SandboxDelete', { sid: 's1' }), new Uint8Array(), { timeout: 5000 }).catch((e) => e);
      expect(permissionError(err, identityOf(viewer))?.message).toBe('permission denied: role viewer may not sandbox delete s1 (publish vc.v1.sandbox.s1.delete)');
      await nc.close();
      // No host runs here: the operator's command is let through, and the CLI finds nobody serving it.
      const r = spawnSync(process.execPath, ['dist/bin/virtactors.js', '--server', url, '--creds', auth.creds('operator'), 'sandbox', 'delete', 's1'], {
        encoding: 'utf8', env: { ...process.env, NATS_URL: '', NATS_CREDS: '' },
      });
      expect([r.status, r.stderr]).toEqual([1, 'virtactors: Unavailable: no runtime host answers vc.v1.sandbox.s1.delete: none runs (is `npm start` running?), or every one is too busy to answer in time\n']);
    } finally {
      server.kill('SIGTERM');
    }
  });
});
