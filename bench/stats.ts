// Small helpers for the benchmarks: percentiles, timing loops, process memory.
import { readFileSync } from 'node:fs';

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface Latency {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}

/** Runs `fn` n times one after the other and reports latencies in milliseconds. */
export async function measure(n: number, fn: (i: number) => Promise<unknown>, warmup = Math.min(50, n)): Promise<Latency> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await fn(i);
    samples.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return summarize(samples);
}

/**
 * Measures several round trips in alternating rounds (each round runs every one of them in
 * turn), so that a machine getting busier or quieter meanwhile moves all of them alike.
 */
export async function interleaved<K extends string>(n: number, rounds: number, fns: Record<K, () => Promise<unknown>>): Promise<Record<K, Latency>> {
  const names = Object.keys(fns) as K[];
  const samples = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (const k of names) for (let i = 0; i < Math.min(50, n); i++) await fns[k]();
  const perRound = Math.ceil(n / rounds);
  for (let r = 0; r < rounds; r++) {
    for (const k of names) {
      for (let i = 0; i < perRound; i++) {
        const t = process.hrtime.bigint();
        await fns[k]();
        samples[k].push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }
  }
  return Object.fromEntries(names.map((k) => [k, summarize(samples[k])])) as Record<K, Latency>;
}

export function summarize(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length);
  return { n: samples.length, p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), mean: round(mean) };
}

export const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Runs `total` jobs with at most `concurrency` in flight; returns jobs per second. */
export async function throughput(total: number, concurrency: number, job: (i: number) => Promise<unknown>): Promise<{ total: number; seconds: number; perSecond: number }> {
  let next = 0;
  const t = process.hrtime.bigint();
  const worker = async () => {
    while (next < total) await job(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  return { total, seconds: round(seconds), perSecond: round(total / seconds, 1) };
}

export async function gcHeap(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  return process.memoryUsage().heapUsed;
}

/** Resident memory of a process, MiB. */
export function rssMiB(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return round(Number(kb ?? 0) / 1024, 1);
}
