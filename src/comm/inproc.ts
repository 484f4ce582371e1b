/**
 * inproc transport: every rank is an async task in this one thread. A call registers its
 * arguments in a rendezvous keyed by (group, seq); the last rank to arrive computes every rank's
 * outputs (reductions in rank order) and resolves all of them in rank order, so runs are
 * deterministic. Mismatches are detected on arrival, timeouts by a timer per rendezvous, and one
 * rank's failure rejects every pending and future call of the others.
 */
import type { AxisName, CommBuf, World } from './types.js';
import { CommAbortError, CommError } from './errors.js';
import { accumulate, checkPairs, finishAvg, GroupBase, mismatchMessage, recvBytesOf, sameCall, type Call } from './core.js';
import { checkGroupRanks } from './groups.js';

interface Arrival {
  call: Call;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Rendezvous {
  gid: number;
  seq: number;
  op: Call['op'];
  arrivals: (Arrival | undefined)[];
  count: number;
  timer?: ReturnType<typeof setTimeout>;
  /** Set once the rendezvous failed: late arrivals get the same error. */
  error?: Error;
}

interface GroupInfo {
  ranks: readonly number[];
  axis: AxisName;
}

/** State shared by the P ranks of one inproc run. */
export class InprocFabric {
  private readonly groups: GroupInfo[] = [];
  private readonly pending = new Map<string, Rendezvous>();
  private readonly exited = new Set<number>();
  private abortMsg: string | null = null;
  /** peerBuffers' deposits, by group and call number. */
  readonly shared = new Map<string, (CommBuf | undefined)[]>();

  constructor(
    readonly size: number,
    readonly timeoutMs: number,
  ) {}

  /** newGroup #id: the first rank registers it, the others must pass the same list. */
  register(id: number, ranks: readonly number[], axis: AxisName, caller: number): void {
    const g = this.groups[id];
    if (!g) {
      this.groups[id] = { ranks: [...ranks], axis };
      return;
    }
    if (g.axis !== axis || g.ranks.length !== ranks.length || g.ranks.some((r, i) => r !== ranks[i])) {
      throw new Error(`newGroup #${id}: rank ${caller} passed [${ranks.join(', ')}] (axis ${axis}) but another rank passed [${g.ranks.join(', ')}] (axis ${g.axis})`);
    }
  }

  /** Rank `rank` failed: every pending call rejects now, every later call at once. */
  abort(rank: number, message: string): void {
    if (this.abortMsg !== null) return;
    this.abortMsg = `aborted: rank ${rank} failed: ${message}`;
    for (const rv of this.pending.values()) {
      if (rv.error) continue;
      this.fail(rv, (op, seq, axis) => new CommAbortError(`${op} #${seq} on axis ${axis} ${this.abortMsg}`, op, seq, axis));
    }
  }

  /** Rank `rank` returned: calls that still wait for it can never complete. */
  exit(rank: number): void {
    this.exited.add(rank);
    for (const rv of this.pending.values()) this.checkExited(rv);
  }

  arrive(gid: number, seq: number, member: number, call: Call): Promise<void> {
    const g = this.groups[gid]!;
    const key = `${gid}:${seq}`;
    return new Promise<void>((resolve, reject) => {
      if (this.abortMsg !== null) {
        reject(new CommAbortError(`${call.op} #${seq} on axis ${g.axis} ${this.abortMsg}`, call.op, seq, g.axis));
        return;
      }
      let rv = this.pending.get(key);
      if (!rv) {
        rv = { gid, seq, op: call.op, arrivals: new Array<Arrival | undefined>(g.ranks.length), count: 0 };
        this.pending.set(key, rv);
        if (this.timeoutMs > 0 && Number.isFinite(this.timeoutMs)) rv.timer = setTimeout(() => this.timeout(rv!), this.timeoutMs);
      }
      if (rv.error) {
        reject(rv.error);
        return;
      }
      rv.arrivals[member] = { call, resolve, reject };
      rv.count++;
      // Compare with the lowest arrived member: every rank then reports the same pair.
      const first = rv.arrivals.findIndex((x) => x !== undefined);
      for (let k = first + 1; k < rv.arrivals.length; k++) {
        const x = rv.arrivals[k];
        if (x && !sameCall(x.call, rv.arrivals[first]!.call)) {
          const msg = mismatchMessage(g.ranks[k]!, x.call, g.ranks[first]!, rv.arrivals[first]!.call, seq, g.axis);
          this.fail(rv, (op, s, axis) => new CommError(msg, op, s, axis));
          return;
        }
      }
      if (rv.count < g.ranks.length) {
        this.checkExited(rv);
        return;
      }
      this.complete(rv, g);
    });
  }

  private checkExited(rv: Rendezvous): void {
    if (rv.error) return;
    const g = this.groups[rv.gid]!;
    const gone = g.ranks.filter((r, k) => !rv.arrivals[k] && this.exited.has(r));
    if (gone.length === 0) return;
    const msg = `${rv.op} #${rv.seq} on axis ${g.axis}: rank${gone.length > 1 ? 's' : ''} ${gone.join(', ')} returned without calling it`;
    this.fail(rv, (op, seq, axis) => new CommError(msg, op, seq, axis));
  }

  private timeout(rv: Rendezvous): void {
    if (rv.error) return;
    const g = this.groups[rv.gid]!;
    const missing = g.ranks.filter((_, k) => !rv.arrivals[k]);
    const arrived = g.ranks.filter((_, k) => rv.arrivals[k]);
    const verb = missing.length > 1 ? 'have' : 'has';
    const msg = `${rv.op} #${rv.seq} on axis ${g.axis} timed out after ${this.timeoutMs} ms: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ${verb} not arrived (arrived: ${arrived.join(', ')})`;
    this.fail(rv, (op, seq, axis) => new CommError(msg, op, seq, axis));
  }

  /** Rejects every arrived rank (each with an error naming its own op) and poisons the seq. */
  private fail(rv: Rendezvous, make: (op: Call['op'], seq: number, axis: AxisName) => CommError): void {
    const g = this.groups[rv.gid]!;
    if (rv.timer) clearTimeout(rv.timer);
    rv.error = make(rv.op, rv.seq, g.axis);
    for (const a of rv.arrivals) if (a) a.reject(make(a.call.op, rv.seq, g.axis));
  }

  private complete(rv: Rendezvous, g: GroupInfo): void {
    if (rv.timer) clearTimeout(rv.timer);
    this.pending.delete(`${rv.gid}:${rv.seq}`);
    const arr = rv.arrivals as Arrival[];
    const calls = arr.map((x) => x.call);
    try {
      if (rv.op === 'sendRecv') {
        const bad = checkPairs(calls, calls.map(recvBytesOf), g.ranks, rv.seq, g.axis);
        if (bad) throw new CommError(bad, 'sendRecv', rv.seq, g.axis);
      }
      // Read every input before writing any output: outputs may alias inputs (in-place calls).
      compute(calls);
    } catch (e) {
      for (const a of arr) a.reject(e as Error);
      return;
    }
    for (const a of arr) a.resolve();
  }
}

function copyOf(b: CommBuf, from = 0, to = b.length): CommBuf {
  return b.slice(from, to);
}

/** The sequential definition of every collective, over all ranks' calls at once. */
function compute(calls: readonly Call[]): void {
  const P = calls.length;
  const c0 = calls[0]!;
  switch (c0.op) {
    case 'allReduce': {
      const acc = copyOf(c0.a!);
      for (let k = 1; k < P; k++) accumulate(acc, calls[k]!.a!, c0.redop);
      finishAvg(acc, c0.redop, P);
      for (const c of calls) c.a!.set(acc);
      break;
    }
    case 'allGather': {
      const ins = calls.map((c) => copyOf(c.a!));
      for (const c of calls) ins.forEach((x, k) => c.b!.set(x, k * x.length));
      break;
    }
    case 'reduceScatter': {
      const n = c0.b!.length;
      const outs = calls.map((_, r) => {
        const acc = copyOf(c0.a!, r * n, (r + 1) * n);
        for (let k = 1; k < P; k++) accumulate(acc, calls[k]!.a!.subarray(r * n, (r + 1) * n), c0.redop);
        finishAvg(acc, c0.redop, P);
        return acc;
      });
      calls.forEach((c, r) => c.b!.set(outs[r]!));
      break;
    }
    case 'allToAll': {
      const n = c0.a!.length / P;
      const ins = calls.map((c) => copyOf(c.a!));
      calls.forEach((c, r) => ins.forEach((x, k) => c.b!.set(x.subarray(r * n, (r + 1) * n), k * n)));
      break;
    }
    case 'broadcast': {
      const src = copyOf(calls[c0.root]!.a!);
      calls.forEach((c, k) => k !== c0.root && c.a!.set(src));
      break;
    }
    case 'sendRecv': {
      const sends = calls.map((c) => (c.dst >= 0 ? copyOf(c.a!) : null));
      for (const c of calls) if (c.src >= 0) c.b!.set(sends[c.src]!);
      break;
    }
    case 'barrier':
      break;
  }
}

class InprocGroup extends GroupBase {
  /** peerBuffers calls so far: their deposits' key in the fabric. */
  private peerCalls = 0;

  constructor(
    private readonly fabric: InprocFabric,
    private readonly gid: number,
    axis: AxisName,
    rank: number,
    ranks: readonly number[],
    worldRank: number,
  ) {
    super(axis, rank, ranks, worldRank);
  }

  protected execute(c: Call, seq: number): Promise<void> {
    return this.fabric.arrive(this.gid, seq, this.rank, c);
  }

  /** Every rank is in this thread: any buffer can be handed to the peers as it is. */
  sharesBuffer(_b: CommBuf): boolean {
    return true;
  }

  /** Deposits buf in the fabric under this call's number, then (after a barrier) reads everyone's. */
  async peerBuffers(buf: CommBuf): Promise<CommBuf[]> {
    const key = `${this.gid}/${this.peerCalls++}`;
    const slot = this.fabric.shared.get(key) ?? new Array<CommBuf | undefined>(this.size);
    this.fabric.shared.set(key, slot);
    slot[this.rank] = buf;
    await this.barrier();
    const out = slot.map((b, k) => {
      if (!b || b.constructor !== buf.constructor) throw new CommError(`peerBuffers on axis ${this.axis}: rank ${this.ranks[k]} passed ${b ? b.constructor.name : 'nothing'}, rank ${this.worldRank} a ${buf.constructor.name}`, 'barrier', -1, this.axis);
      return b;
    });
    // Every member has its copy of the list once all are past a second barrier.
    await this.barrier();
    this.fabric.shared.delete(key);
    return out;
  }
}

export class InprocWorld implements World {
  readonly transport = 'inproc' as const;
  readonly group: InprocGroup;
  private nextGroup = 0;

  constructor(
    private readonly fabric: InprocFabric,
    readonly rank: number,
  ) {
    this.group = this.newGroup(
      Array.from({ length: fabric.size }, (_, i) => i),
      'world',
    );
  }

  get size(): number {
    return this.fabric.size;
  }

  newGroup(ranks: readonly number[], axis: AxisName): InprocGroup {
    checkGroupRanks(ranks, this.size);
    const id = this.nextGroup++;
    this.fabric.register(id, ranks, axis, this.rank);
    return new InprocGroup(this.fabric, id, axis, ranks.indexOf(this.rank), [...ranks], this.rank);
  }
}
