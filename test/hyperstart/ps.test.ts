import { describe, expect, it } from 'vitest';
import { filterPsTable, parsePidList, sessionPidArgs } from '../../actors/agents/hyperstart-ps.js';

describe('hyperstart ps helpers', () => {
  it('asks ps for the pids of the given sessions', () => {
    expect(sessionPidArgs([12, 40])).toEqual(['ps', '-o', 'pid=', '-s', '12,40']);
  });

  it('parses a pid column, sorted, ignoring blanks and junk', () => {
    expect(parsePidList('  40\n 7\n\n  12 \nxx\n')).toEqual([7, 12, 40]);
    expect(parsePidList('')).toEqual([]);
  });

  it('keeps the header and the rows of the given pids, wherever the PID column is', () => {
    const table = ['UID   PID  PPID CMD', 'root    1     0 init', 'root   12     1 sleep 100', 'root   13    12 sh -c x', ''].join('\n');
    expect(filterPsTable(table, new Set([12, 13]))).toBe('UID   PID  PPID CMD\nroot   12     1 sleep 100\nroot   13    12 sh -c x\n');
    expect(filterPsTable('COMMAND PID\nsleep 12\nsh 99\n', new Set([12]))).toBe('COMMAND PID\nsleep 12\n');
  });

  it('refuses a table without a PID column', () => {
    expect(() => filterPsTable('COMMAND\nsleep\n', new Set([1]))).toThrow(/no PID column/);
  });
});
