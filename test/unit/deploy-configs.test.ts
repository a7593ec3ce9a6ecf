// The shipped nats-server configurations parse (nats-server -t).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { natsServerBinary } from '../../runtime/nats-server.js';

describe('deploy/ configurations', () => {
  const files = readdirSync('deploy').filter((f) => f.endsWith('.conf'));
  it('has a single node, a 3-node cluster and an accounts config', () => {
    expect(files.sort()).toEqual(['accounts.conf', 'cluster-n0.conf', 'cluster-n1.conf', 'cluster-n2.conf', 'single-node.conf']);
  });
  for (const file of files) {
    it(`${file} is valid`, () => {
      const r = spawnSync(natsServerBinary(), ['-c', `deploy/${file}`, '-t'], {
        env: { ...process.env, VC_HOST_PASSWORD: 'h', VC_CLIENT_PASSWORD: 'c' },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      expect(`${r.stdout}${r.stderr}`).toMatch(/is valid/);
    });
  }
});
