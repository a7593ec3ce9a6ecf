// Wire constants of the hyperstart protocol (reference §5.2–5.3), upstream hyperstart's
// dialect at API version 4244: PROCESSASYNCEVENT = 23, SIGNALPROCESS = 24,
// DELETEINTERFACE = 25. The 2018 runtime's pkg/hyperstart followed the cc-agent dialect,
// which puts PSCONTAINER at 23 and PROCESSASYNCEVENT at 24; that dialect is not spoken here.

/** The only API version accepted (below 1000000 versions must match exactly). */
export const API_VERSION = 4244;

export const Code = {
  VERSION: 0,
  STARTPOD: 1,
  GETPOD_DEPRECATED: 2,
  STOPPOD_DEPRECATED: 3,
  DESTROYPOD: 4,
  RESTARTCONTAINER_DEPRECATED: 5,
  EXECCMD: 6,
  CMDFINISHED_DEPRECATED: 7,
  READY: 8,
  ACK: 9,
  ERROR: 10,
  WINSIZE: 11,
  PING: 12,
  PODFINISHED_DEPRECATED: 13,
  NEXT: 14,
  WRITEFILE: 15,
  READFILE: 16,
  NEWCONTAINER: 17,
  KILLCONTAINER: 18,
  ONLINECPUMEM: 19,
  SETUPINTERFACE: 20,
  SETUPROUTE: 21,
  REMOVECONTAINER: 22,
  PROCESSASYNCEVENT: 23,
  SIGNALPROCESS: 24,
  DELETEINTERFACE: 25,
  // virtactors extensions, far above the upstream enum so that they never collide with a
  // future upstream code; a stock hyperstart answers them with ERROR, which the driver
  // reports as unsupported. Upstream hyperstart cannot pause a container, and its ps lived
  // only in the cc-agent dialect (PSCONTAINER = 23, taken by PROCESSASYNCEVENT here).
  /**
   * No payload; the ACK carries a JSON array of the extension codes the guest serves. A
   * stock hyperstart answers ERROR (with an empty payload, as it answers everything it
   * refuses), so a host learns which guest it has without reading any error text.
   */
  EXTENSIONS: 0x7661_0000,
  /** {container} (RemoveCommand); ACK once every process of the container is stopped. */
  PAUSECONTAINER: 0x7661_0001,
  /** {container}; ACK once the container's processes run again. */
  RESUMECONTAINER: 0x7661_0002,
  /** The cc dialect's PsCommand {container, format, psargs}; the ACK payload is the listing. */
  PSCONTAINER: 0x7661_0003,
  /**
   * The body NEWCONTAINER would carry; ACK (empty) once the container exists in the guest
   * with its init held before the program (OCI create). Its process's stream seqs are not
   * taken: they belong to the start. A later NEWCONTAINER for the id starts it and must
   * carry the same container (its streams aside), else it is refused and the prepared one
   * stays; REMOVECONTAINER removes one that was never started. Preparing the same
   * container again is acknowledged; another container under a prepared or started id is
   * AlreadyExists. Upstream hyperstart creates and starts a container in one command only.
   */
  PREPARECONTAINER: 0x7661_0004,
} as const;

export type CodeName = keyof typeof Code;
export type CodeValue = (typeof Code)[CodeName];

const names = new Map<number, CodeName>(Object.entries(Code).map(([k, v]) => [v, k as CodeName]));

/** The symbolic name of a code, or `code <n>` for one this dialect does not know. */
export function codeName(code: number): string {
  return names.get(code) ?? `code ${code}`;
}

export const isKnownCode = (code: number): code is CodeValue => names.has(code);

/** Codes the guest must refuse with ERROR (upstream removed them). */
export const deprecatedCodes: ReadonlySet<number> = new Set([
  Code.GETPOD_DEPRECATED,
  Code.STOPPOD_DEPRECATED,
  Code.RESTARTCONTAINER_DEPRECATED,
  Code.CMDFINISHED_DEPRECATED,
  Code.PODFINISHED_DEPRECATED,
]);

export const CTL_HEADER_SIZE = 8;
export const TTY_HEADER_SIZE = 12;

/** The largest ctl frame (header included) the 2018 runtime would encode or hyperstart read. */
export const MAX_CTL_FRAME = 10240;
/**
 * The largest guest→host ctl frame the host accepts: replies may carry data (a process
 * list, READFILE), so they are not held to the 10240 bytes of host→guest commands.
 */
export const MAX_REPLY_FRAME = 1024 * 1024;
/** Our tty frames: big enough for a pipe read, small enough to bound a decoder's buffer. */
export const MAX_TTY_FRAME = 65536;
/** runv writes at most this many ctl bytes ahead of the guest's NEXT acknowledgements. */
export const NEXT_WINDOW = 512;

/** PROCESSASYNCEVENT's only event kind. */
export const EVENT_FINISHED = 'finished';
