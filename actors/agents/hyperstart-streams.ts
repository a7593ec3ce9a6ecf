// The stream sequence numbers of the processes a hyperstart driver started, kept in the
// sandbox's run directory: the host picks them (NEWCONTAINER, EXECCMD), and the guest
// tags every output frame with them, so a driver that reattaches after a restart needs
// them to route the output of the processes it adopts. Written whole (temporary file and
// rename) before each process is started, and again when one is forgotten.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const STREAMS_FILE = 'hyperstart-streams.json';

export interface SavedStreams {
  containerId: string;
  execId: string;
  /** stdin + stdout. */
  stdio: number;
  /** 0 when stderr shares stdio (a terminal). */
  stderr: number;
  /** The streams whose EOF the exit waits for. */
  eofs: number[];
}

const seq = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/** What the file says; nothing when it is missing or not ours. */
export function loadStreams(runDir: string): SavedStreams[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(join(runDir, STREAMS_FILE), 'utf8'));
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  return parsed.filter(
    (s: Partial<SavedStreams>): s is SavedStreams =>
      typeof s?.containerId === 'string' && typeof s.execId === 'string' && seq(s.stdio) && s.stdio > 0 && seq(s.stderr) && Array.isArray(s.eofs) && s.eofs.every((e) => e === s.stdio || e === s.stderr),
  );
}

export function saveStreams(runDir: string, streams: SavedStreams[]): void {
  const path = join(runDir, STREAMS_FILE);
  writeFileSync(`${path}.tmp`, JSON.stringify(streams), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}
