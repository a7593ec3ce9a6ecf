// The in-guest process supervisor: one sandbox's containers and their processes. It
// spawns a container's init process and its execs from process specs, tracks their exits,
// delivers signals, lists processes, holds their output for readers, and gives each
// container a cgroup (limits, counters, freezer) where the guest has writable cgroups.
// Guest agents (kata, hyperstart) translate their protocol onto these calls; every
// failure is a GuestError with a code the agent maps onto its protocol.
import { execFile } from 'node:child_process';
import { existsSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CgroupDriver, CgroupStats, ContainerCgroup, Resources } from './cgroups/index.js';
import { alreadyExists, deadlineExceeded, failedPrecondition, failure, internal, invalidArgument, notFound } from './errors.js';
import { silentLog, type GuestLog } from './log.js';
import { checkDirectory, findExecutable } from './paths.js';
import { allProcesses, procInfo, sendSignal, withDescendants } from './proc.js';
import { ManagedProcess, planLaunch, planRuntimeLaunch, type ProcessSpec } from './process.js';
import { Bundles, GATE_SHELL, gatedInit, helperMounts } from './oci/bundle.js';
import { misplacement } from './oci/placement.js';
import type { OciRuntime } from './oci/runtime.js';
import { capabilitySet, ociConfig, type OciProcess } from './oci/spec.js';
import type { Reaper } from './reaper.js';
import { requireTool } from './tools.js';
import { resolveUser, type Identity } from './user.js';

export type { ProcessSpec } from './process.js';

export type ContainerState = 'created' | 'running' | 'paused' | 'stopped';
export type OutputStream = 'stdout' | 'stderr';
export type ProcessListFormat = 'json' | 'table';

export interface ContainerConfig {
  id: string;
  /** Id of the init process (WaitProcess/ReadStdout use it); default: the container id. */
  initId?: string;
  process: ProcessSpec;
  /**
   * Root filesystem: an absolute path of an existing directory, never "/". "" or absent:
   * the minimal default one (with an OCI runtime), or the guest's own (without).
   */
  root?: string;
  resources?: Resources;
  /** The container's hostname (its own uts namespace); default the guest's. */
  hostname?: string;
  /** Relaxed confinement: every capability, no seccomp filter, unmasked /proc and /sys. */
  privileged?: boolean;
  /** Shares the guest's (the pod's) pid namespace instead of getting its own (stock hyperstart). */
  podPidNamespace?: boolean;
}

export interface SupervisorOptions {
  /** Name of this sandbox's cgroup directory below the guest's own cgroup. */
  group: string;
  cgroups?: CgroupDriver;
  /** Present when the guest is PID 1: processes run in its reaping namespace. */
  reaper?: Reaper;
  log?: GuestLog;
  /** Told about every exit as it happens (push-style agents). */
  onExit?(containerId: string, execId: string, status: number): void;
  /**
   * Containers run through this OCI runtime, from bundles under `stateDir`, confined (see
   * oci/). Without one (a guest that is not root), processes run as plain children with
   * the old wrapper chain and are not contained.
   */
  oci?: OciRuntime;
  /** The guest's own state directory (0700): bundles and the default root filesystem. */
  stateDir?: string;
}

const SIGKILL = 9;
const SIGSTOP = 19;
const SIGCONT = 18;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

class Container {
  state: ContainerState = 'created';
  readonly processes = new Map<string, ManagedProcess>();
  init: ManagedProcess | undefined;
  /** Paused with SIGSTOP (no freezer). */
  stoppedBySignal = false;
  /** OCI: the runtime already runs the container, its init held at the start gate. */
  gated: ManagedProcess | undefined;

  constructor(
    readonly id: string,
    readonly initId: string,
    readonly config: ContainerConfig,
    readonly root: string,
    readonly program: string,
    readonly identity: Identity | undefined,
    readonly cgroup: ContainerCgroup | undefined,
  ) {}

  live(): ManagedProcess[] {
    return [...this.processes.values()].filter((p) => p.status === undefined);
  }
}

function checkId(kind: string, id: string): string {
  if (!ID_PATTERN.test(id)) throw invalidArgument(`invalid ${kind} id ${JSON.stringify(id)}`);
  return id;
}

/** A container's root filesystem as given: absolute, an existing directory, canonical, never "/". */
function checkRoot(root: string): string {
  if (!isAbsolute(root)) throw invalidArgument(`root filesystem ${JSON.stringify(root)} is not an absolute path`);
  let real: string;
  try {
    real = realpathSync(root);
    if (!statSync(real).isDirectory()) throw new Error('not a directory');
  } catch {
    throw invalidArgument(`root filesystem ${root} is not an existing directory`);
  }
  if (real === '/') throw invalidArgument(`root filesystem ${root} is the guest's own root: give a container root filesystem`);
  return real;
}

export class Supervisor {
  private readonly containers = new Map<string, Container>();
  private readonly log: GuestLog;
  private readonly bundles: Bundles | undefined;

  constructor(private readonly options: SupervisorOptions) {
    this.log = options.log ?? silentLog;
    if (options.oci) {
      if (!options.stateDir) throw new Error('an OCI runtime needs the guest state directory');
      this.bundles = new Bundles(options.stateDir, options.oci.helpers);
    }
  }

  /** Whether containers run through an OCI runtime (and so are confined). */
  get ociRuntime(): string | undefined {
    return this.options.oci?.name;
  }

  get cgroupVersion(): 'v1' | 'v2' | undefined {
    return this.options.cgroups?.version;
  }

  containerIds(): string[] {
    return [...this.containers.keys()];
  }

  state(containerId: string): ContainerState {
    return this.container(containerId).state;
  }

  private container(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id} does not exist`);
    return c;
  }

  private identity(spec: ProcessSpec, root: string): Identity | undefined {
    const id = resolveUser(spec.user ?? {}, root);
    const same = id.uid === process.getuid?.() && id.gid === process.getgid?.() && id.additionalGids.length === 0;
    return same ? undefined : id;
  }

  /** Checks a spec and finds its program, before anything runs. */
  private prepare(spec: ProcessSpec, root: string): { program: string; identity: Identity | undefined } {
    if (!spec.args?.length) throw invalidArgument('the process has no args');
    // runc in the foreground copies a process's output through pipes of its own unless it
    // is handed a console over a socket (SCM_RIGHTS, which Node cannot receive): the
    // process would never see its terminal.
    if (spec.terminal && this.options.oci?.name === 'runc') {
      throw failedPrecondition('a terminal process needs crun: runc gives it pipes instead of the terminal (the host setting VC_OCI_RUNTIME=runc)');
    }
    const cwd = spec.cwd || '/';
    if (!cwd.startsWith('/')) throw invalidArgument(`working directory ${cwd} is not absolute`);
    checkDirectory(root, cwd);
    return { program: findExecutable(spec.args[0]!, spec.env, root, cwd), identity: this.identity(spec, root) };
  }

  // ---- lifecycle ------------------------------------------------------------------

  /**
   * Prepares a container: checks its process, creates its cgroup and applies limits. With
   * an OCI runtime it also writes the bundle and has the runtime create the container, its
   * init waiting at the start gate (OCI create), so that start only opens the gate.
   */
  async createContainer(config: ContainerConfig): Promise<void> {
    const id = checkId('container', config.id);
    if (this.containers.has(id)) throw alreadyExists(`container ${id} already exists`);
    const initId = config.initId || id;
    const given = config.root && config.root !== '' ? config.root : '';
    if (this.bundles && given === '/') throw invalidArgument(`root filesystem / is the guest's own root: give a container root filesystem`);
    const root = this.bundles ? (given ? checkRoot(given) : this.bundles.defaultRootfs()) : given;
    const { program, identity } = this.prepare(config.process, root);
    let cgroup: ContainerCgroup | undefined;
    try {
      cgroup = this.options.cgroups?.create(this.options.group, id);
    } catch (err) {
      throw failure(`cannot create the cgroup of container ${id}: ${(err as Error).message}`, err);
    }
    const c = new Container(id, initId, config, root, program, identity, cgroup);
    this.containers.set(id, c);
    try {
      if (config.resources) this.applyResources(c, config.resources);
      if (this.bundles) c.gated = await this.createInRuntime(c, !given);
    } catch (err) {
      this.containers.delete(id);
      // What the runtime made of it (runc's cgroups, wherever it put them) goes with the bundle.
      await this.forgetInRuntime(c);
      await cgroup?.destroy().catch(() => {});
      throw err;
    }
  }

  /** The OCI user of a process: always numeric. */
  private ociUser(spec: ProcessSpec, root: string): OciProcess['user'] {
    const id = resolveUser(spec.user ?? {}, root);
    return { uid: id.uid, gid: id.gid, ...(id.additionalGids.length > 0 ? { additionalGids: id.additionalGids } : {}) };
  }

  private async createInRuntime(c: Container, defaultRoot: boolean): Promise<ManagedProcess> {
    const oci = this.options.oci!;
    const spec = c.config.process;
    const privileged = !!c.config.privileged;
    const mounts = helperMounts(oci.helpers);
    // The shared default root is read-only; its /tmp is the container's own.
    if (defaultRoot) mounts.push({ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=65536k'] });
    const config = ociConfig({
      privileged,
      podPidNamespace: !!c.config.podPidNamespace,
      process: { terminal: false, user: this.ociUser(spec, c.root), args: gatedInit(c.program, spec.args.slice(1), spec.env, !c.config.podPidNamespace), env: [], cwd: spec.cwd || '/' },
      root: { path: c.root, readonly: defaultRoot },
      hostname: c.config.hostname || osHostname(),
      guestMounts: mounts,
      // runc puts the init there itself; crun leaves it to the gate below.
      ...(oci.placesCgroups && c.cgroup?.ociPath ? { cgroupsPath: c.cgroup.ociPath } : {}),
    });
    const bundle = this.bundles!.write(c.id, config);
    // The runtime itself stays outside the container's cgroup: the init joins it below, at the gate.
    const launch = planRuntimeLaunch(oci.runArgv(c.id, bundle), {
      cgroupProcs: [],
      privateMount: oci.privateMountArgv(),
      ...(oci.hiddenMount ? { hiddenMount: oci.hiddenMount } : {}),
      unmounts: oci.unmounts,
      terminal: !!spec.terminal,
      ...(spec.consoleSize ? { consoleSize: spec.consoleSize } : {}),
      gate: true,
      program: GATE_SHELL,
    });
    const p = await ManagedProcess.start(c.id, c.initId, spec, launch);
    // Held at the gate, the init has not forked yet: whatever it starts is born in the cgroup.
    if (p.status === undefined && oci.placesCgroups) {
      // runc placed it (and places its execs where it put the init): it must be exactly there.
      const wrong = misplacement(p.pid, c.cgroup);
      if (wrong) {
        p.signal(SIGKILL);
        await p.exited;
        throw internal(`${oci.name} put container ${c.id} outside its cgroup in the sandbox: ${wrong}`);
      }
    } else if (p.status === undefined) {
      try {
        for (const file of c.cgroup?.procsFiles ?? []) writeFileSync(file, String(p.pid));
      } catch (err) {
        p.signal(SIGKILL);
        throw failure(`cannot put container ${c.id} into its cgroup: ${(err as Error).message}`, err);
      }
    }
    if (p.status !== undefined) {
      const why = new TextDecoder().decode(await p.stderr.read(64 * 1024).catch(() => new Uint8Array())).trim();
      throw internal(`${oci.name} could not create container ${c.id}: ${why || `exit status ${p.status}`}`);
    }
    return p;
  }

  /** Starts the init process of a created container; resolves with its pid. */
  async startContainer(id: string): Promise<number> {
    const c = this.container(id);
    if (c.state !== 'created') throw failedPrecondition(`container ${id} is ${c.state}, not created`);
    c.state = 'running';
    try {
      const p = c.gated ? await this.openGate(c, c.gated) : await this.spawn(c, c.initId, c.config.process, c.program, c.identity);
      c.init = p;
      void p.exited.then(() => this.initExited(c));
      return p.pid;
    } catch (err) {
      c.state = 'stopped';
      throw failure(`cannot start container ${id}: ${(err as Error).message}`, err);
    }
  }

  /** Runs an extra process in a started container; resolves with its pid. */
  async exec(containerId: string, execId: string, spec: ProcessSpec): Promise<number> {
    const c = this.container(containerId);
    checkId('exec', execId);
    if (c.state === 'created') throw failedPrecondition(`container ${containerId} is not started`);
    if (c.state === 'stopped') throw failedPrecondition(`container ${containerId} is stopped`);
    if (c.processes.has(execId) || execId === c.initId) throw alreadyExists(`process ${execId} already exists in container ${containerId}`);
    const { program, identity } = this.prepare(spec, c.root);
    try {
      if (this.bundles) return (await this.execInRuntime(c, execId, spec, program)).pid;
      return (await this.spawn(c, execId, spec, program, identity)).pid;
    } catch (err) {
      throw failure(`cannot exec in container ${containerId}: ${(err as Error).message}`, err);
    }
  }

  private async spawn(c: Container, execId: string, spec: ProcessSpec, program: string, identity: Identity | undefined): Promise<ManagedProcess> {
    const reaperPid = this.options.reaper ? await this.options.reaper.pid() : undefined;
    const launch = planLaunch(spec, { root: c.root, reaperPid, cgroupProcs: c.cgroup?.procsFiles ?? [] }, program, identity);
    return this.track(c, execId, await ManagedProcess.start(c.id, execId, spec, launch));
  }

  /** Starts a created OCI container: its init leaves the gate and runs the program. */
  private async openGate(c: Container, p: ManagedProcess): Promise<ManagedProcess> {
    c.gated = undefined;
    this.track(c, c.initId, p);
    if (p.status !== undefined) throw internal(`container ${c.id} ended before it was started (status ${p.status})`);
    // Without an init of its own (the pod's pid namespace) the gate execs the program: its pid is the gate's.
    await p.open(c.program, !c.config.podPidNamespace);
    return p;
  }

  /** An exec through the OCI runtime: a process.json with the container's confinement. */
  private async execInRuntime(c: Container, execId: string, spec: ProcessSpec, program: string): Promise<ManagedProcess> {
    const oci = this.options.oci!;
    const privileged = !!c.config.privileged;
    const file = this.bundles!.writeProcess(c.id, execId, {
      terminal: false,
      user: this.ociUser(spec, c.root),
      args: [program, ...spec.args.slice(1)],
      env: spec.env,
      cwd: spec.cwd || '/',
      capabilities: capabilitySet(privileged),
      noNewPrivileges: !privileged,
    });
    const launch = planRuntimeLaunch(oci.execArgv(c.id, file), {
      // crun's exec inherits the cgroup of its wrapper; runc joins the process to the
      // container's itself (and its own threads must not count against the container's pids).
      cgroupProcs: oci.placesCgroups ? [] : (c.cgroup?.procsFiles ?? []),
      privateMount: oci.placesCgroups ? [] : oci.privateMountArgv(),
      ...(oci.hiddenMount && !oci.placesCgroups ? { hiddenMount: oci.hiddenMount } : {}),
      terminal: !!spec.terminal,
      ...(spec.consoleSize ? { consoleSize: spec.consoleSize } : {}),
      program,
    });
    const p = this.track(c, execId, await ManagedProcess.start(c.id, execId, spec, launch));
    void p.exited.then(() => this.bundles?.removeProcess(c.id, execId));
    return p;
  }

  private track(c: Container, execId: string, p: ManagedProcess): ManagedProcess {
    c.processes.set(execId, p);
    void p.exited.then((status) => {
      this.log.debug('process exited', { containerId: c.id, execId, status });
      this.options.onExit?.(c.id, execId, status);
    });
    const forget = () => {
      if (p.waited && p.drained && c.processes.get(execId) === p) c.processes.delete(execId);
    };
    p.stdout.onFinished(forget);
    p.stderr.onFinished(forget);
    return p;
  }

  /** Init gone: the container stopped, and (as when its pid namespace dies) so does everything in it. */
  private initExited(c: Container): void {
    c.state = 'stopped';
    const rest = this.members(c);
    if (rest.length === 0) return;
    for (const pid of rest) sendSignal(pid, SIGKILL);
    if (c.cgroup?.canFreeze) void c.cgroup.thaw().catch(() => {});
  }

  // ---- processes ------------------------------------------------------------------

  private process(c: Container, execId: string): ManagedProcess {
    const p = c.processes.get(execId);
    if (!p) throw notFound(`process ${execId} does not exist in container ${c.id}`);
    return p;
  }

  /**
   * The container's processes as pids: the cgroup's members where there is one (orphans
   * included), else the tracked processes and their descendants; wrappers never count.
   * The init process comes first, then the execs in start order, then the rest.
   */
  private members(c: Container): number[] {
    const wrappers = new Set<number>();
    const tracked: number[] = [];
    for (const p of c.processes.values()) {
      for (const w of p.wrappers) wrappers.add(w);
      if (p.status === undefined) tracked.push(p.pid);
      else wrappers.add(p.pid);
    }
    const found = c.cgroup ? new Set([...tracked, ...c.cgroup.pids()]) : withDescendants(tracked, allProcesses());
    const ordered = tracked.filter((pid) => found.has(pid));
    const rest = [...found].filter((pid) => !wrappers.has(pid) && !ordered.includes(pid)).sort((a, b) => a - b);
    return [...ordered, ...rest];
  }

  /**
   * Delivers a signal. An empty exec id (or a paused container) means every process of the
   * container; a signal for a stopped container is dropped.
   */
  async signal(containerId: string, execId: string, signal: number): Promise<void> {
    const c = this.container(containerId);
    if (!Number.isInteger(signal) || signal < 0 || signal > 64) throw invalidArgument(`invalid signal ${signal}`);
    if (c.state === 'stopped' || c.state === 'created') return;
    if (execId === '' || c.state === 'paused') {
      for (const pid of this.members(c)) sendSignal(pid, signal);
      // Frozen processes act on SIGKILL only once thawed.
      if (signal === SIGKILL && c.state === 'paused') await this.thaw(c);
      return;
    }
    this.process(c, execId).signal(signal);
  }

  /**
   * SIGKILL to whatever is left of a container whose init has ended: the processes of a
   * container that shares its pid namespace (a stock hyperstart pod's) outlive their init
   * otherwise.
   */
  killRemaining(containerId: string): void {
    const c = this.container(containerId);
    for (const pid of this.members(c)) sendSignal(pid, SIGKILL);
  }

  /** Blocks until the process exits; returns its status and forgets it (a second wait fails). */
  async wait(containerId: string, execId: string, abort?: AbortSignal): Promise<number> {
    const c = this.container(containerId);
    const p = this.process(c, execId);
    if (p.waited) throw notFound(`process ${execId} of container ${containerId} was already waited for`);
    let status = await (abort ? raceAbort(p.exited, abort) : p.exited);
    // An exec killed because its container's init ended (the kernel ends the pid namespace
    // with it) is reported after that init, as when the supervisor kills the rest itself.
    const init = c.init;
    if (this.bundles && init && init !== p && init.status === undefined && !isAlive(init.pid)) {
      await (abort ? raceAbort(init.exited, abort) : init.exited);
      status = p.status ?? status;
    }
    if (p.waited) throw notFound(`process ${execId} of container ${containerId} was already waited for`);
    p.waited = true;
    if (p.drained && c.processes.get(execId) === p) c.processes.delete(execId);
    return status;
  }

  /** Output of a process: blocks until data; an empty result is the end of the stream. */
  read(containerId: string, execId: string, stream: OutputStream, len: number, abort?: AbortSignal): Promise<Uint8Array> {
    const p = this.process(this.container(containerId), execId);
    return (stream === 'stdout' ? p.stdout : p.stderr).read(len, abort);
  }

  write(containerId: string, execId: string, data: Uint8Array): Promise<number> {
    const p = this.process(this.container(containerId), execId);
    if (p.waited) throw notFound(`process ${execId} of container ${containerId} has exited`);
    return p.write(data);
  }

  closeStdin(containerId: string, execId: string): void {
    this.process(this.container(containerId), execId).closeStdin();
  }

  resize(containerId: string, execId: string, rows: number, cols: number): Promise<void> {
    return this.process(this.container(containerId), execId).resize(rows, cols);
  }

  /** The container's processes: a JSON array of pids, or ps output filtered to them. */
  async listProcesses(containerId: string, format: string, args: readonly string[]): Promise<Buffer> {
    if (format !== 'json' && format !== 'table') throw invalidArgument('invalid format option');
    const c = this.container(containerId);
    const pids = this.members(c);
    if (format === 'json') return Buffer.from(JSON.stringify(pids));
    const output = await runPs(args.length > 0 ? args : ['-ef']);
    return Buffer.from(filterPsTable(output, new Set(pids)));
  }

  // ---- resources --------------------------------------------------------------------

  private needCgroup(c: Container): ContainerCgroup {
    if (!c.cgroup) throw failedPrecondition(`container ${c.id} has no cgroup: this guest has no writable cgroups`);
    return c.cgroup;
  }

  private applyResources(c: Container, resources: Resources): void {
    const cgroup = this.needCgroup(c);
    try {
      cgroup.update(resources);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const message = `cannot apply resources to container ${c.id}: ${(err as Error).message}`;
      throw code === 'EINVAL' || code === 'EBUSY' ? invalidArgument(message) : failedPrecondition(message);
    }
  }

  updateContainer(containerId: string, resources: Resources): void {
    this.applyResources(this.container(containerId), resources);
  }

  stats(containerId: string): CgroupStats {
    return this.needCgroup(this.container(containerId)).stats();
  }

  async pause(containerId: string): Promise<void> {
    const c = this.container(containerId);
    if (c.state !== 'running') throw failedPrecondition(`container ${containerId} is ${c.state}, not running`);
    if (c.cgroup?.canFreeze) await c.cgroup.freeze();
    else {
      for (const pid of this.members(c)) sendSignal(pid, SIGSTOP);
      c.stoppedBySignal = true;
    }
    c.state = 'paused';
  }

  async resume(containerId: string): Promise<void> {
    const c = this.container(containerId);
    if (c.state !== 'paused') throw failedPrecondition(`container ${containerId} is ${c.state}, not paused`);
    await this.thaw(c);
    if (c.state === 'paused') c.state = 'running';
  }

  private async thaw(c: Container): Promise<void> {
    if (c.stoppedBySignal) {
      for (const pid of this.members(c)) sendSignal(pid, SIGCONT);
      c.stoppedBySignal = false;
    } else if (c.cgroup?.canFreeze) await c.cgroup.thaw();
  }

  // ---- removal ----------------------------------------------------------------------

  /**
   * Kills every process of the container, waits for them (timeoutSec 0 = for ever) and
   * forgets the container.
   */
  async removeContainer(containerId: string, timeoutSec: number): Promise<void> {
    const c = this.container(containerId);
    const gone = this.killAndWait(c);
    if (timeoutSec > 0) {
      const done = await Promise.race([gone.then(() => true), sleep(timeoutSec * 1000).then(() => false)]);
      if (!done) throw deadlineExceeded(`Timeout reached after ${timeoutSec}s`);
    } else {
      await gone;
    }
    this.containers.delete(containerId);
    await this.forgetInRuntime(c);
    await c.cgroup?.destroy().catch((err: Error) => this.log.warn('container cgroup not removed', { containerId, err }));
  }

  /** The bundle goes; runtime state is left only by a runtime that was killed, and is deleted then. */
  private async forgetInRuntime(c: Container): Promise<void> {
    const oci = this.options.oci;
    if (!oci || !this.bundles) return;
    this.bundles.remove(c.id);
    if (!existsSync(join(oci.stateRoot, c.id))) return;
    const [file, ...args] = oci.deleteArgv(c.id);
    await new Promise<void>((resolve) => execFile(file!, args, () => resolve()));
  }

  private async killAndWait(c: Container): Promise<void> {
    let thawed = false;
    // A container created but never started: its runtime waits at the gate, alone.
    if (c.gated) {
      const gated = c.gated;
      c.gated = undefined;
      this.track(c, c.initId, gated);
    }
    for (;;) {
      const pids = this.members(c);
      const live = c.live();
      if (pids.length === 0 && live.length === 0) return;
      for (const pid of pids) sendSignal(pid, SIGKILL);
      for (const p of live) p.signal(SIGKILL);
      if (c.state === 'paused' && !thawed) {
        thawed = true;
        await this.thaw(c).catch(() => {});
      }
      await Promise.race([Promise.all(live.map((p) => p.exited)), sleep(50)]);
    }
  }

  /** Kills and forgets every container, then removes the sandbox's cgroup group. */
  async destroy(timeoutMs = 10_000): Promise<void> {
    const all = [...this.containers.values()];
    const done = Promise.all(all.map((c) => this.killAndWait(c)));
    const finished = await Promise.race([done.then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!finished) this.log.warn('some container processes did not die in time');
    for (const c of all) {
      this.containers.delete(c.id);
      await this.forgetInRuntime(c);
      await c.cgroup?.destroy().catch((err: Error) => this.log.warn('container cgroup not removed', { containerId: c.id, err }));
    }
    await this.options.cgroups?.removeGroup(this.options.group).catch((err: Error) => this.log.warn('sandbox cgroup group not removed', { err }));
  }
}

function isAlive(pid: number): boolean {
  const state = procInfo(pid)?.state;
  return state !== undefined && state !== 'Z';
}

function raceAbort<T>(promise: Promise<T>, abort: AbortSignal): Promise<T> {
  if (abort.aborted) return Promise.reject(abort.reason ?? new Error('cancelled'));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abort.reason ?? new Error('cancelled'));
    abort.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        abort.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        abort.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function runPs(args: readonly string[]): Promise<string> {
  const ps = requireTool('ps', 'to list processes');
  return new Promise((resolve, reject) => {
    execFile(ps, [...args], { maxBuffer: 16 * 1024 * 1024, env: { LC_ALL: 'C', PATH: process.env.PATH ?? '' } }, (err, stdout, stderr) => {
      if (err) reject(internal(`ps ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Keeps ps's header and the lines whose PID column names one of `pids`. */
export function filterPsTable(output: string, pids: ReadonlySet<number>): string {
  const lines = output.split('\n');
  const header = lines[0] ?? '';
  const column = header.trim().split(/\s+/).indexOf('PID');
  if (column < 0) throw internal('ps output has no PID column');
  const kept = [header];
  for (const line of lines.slice(1)) {
    if (!line.trim()) continue;
    const pid = Number(line.trim().split(/\s+/)[column]);
    if (pids.has(pid)) kept.push(line);
  }
  return `${kept.join('\n')}\n`;
}
