/**
 * Errors of the comm layer. A CommError carries the call it belongs to (op, seq, axis) so that a
 * launcher can report `rank 2 failed in allReduce #7 (axis dp): …` however deep it was rethrown.
 */
import type { AxisName, CommRecord } from './types.js';

export class CommError extends Error {
  constructor(
    message: string,
    readonly op: CommRecord['op'],
    readonly seq: number,
    readonly axis: AxisName,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CommError';
  }
}

/** Raised on every other rank after one rank failed: a consequence, never the root cause. */
export class CommAbortError extends CommError {
  constructor(message: string, op: CommRecord['op'], seq: number, axis: AxisName) {
    super(message, op, seq, axis);
    this.name = 'CommAbortError';
  }
}

/** What runRanks rejects with: which rank failed first and, when known, in which call. */
export class RankFailure extends Error {
  constructor(
    message: string,
    readonly rank: number,
    readonly op?: CommRecord['op'],
    readonly seq?: number,
    readonly axis?: AxisName,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RankFailure';
  }
}

/** Plain, structured-cloneable description of an error (crosses worker boundaries). */
export interface ErrorInfo {
  message: string;
  name: string;
  stack?: string;
  op?: CommRecord['op'];
  seq?: number;
  axis?: AxisName;
  abort?: boolean;
}

/** The innermost CommError in e's cause chain, if any (user code may wrap comm errors). */
function findComm(e: unknown): CommError | undefined {
  for (let x: unknown = e, depth = 0; x instanceof Error && depth < 16; x = x.cause, depth++) {
    if (x instanceof CommError) return x;
  }
  return undefined;
}

export function errorInfo(e: unknown): ErrorInfo {
  const err = e instanceof Error ? e : new Error(String(e));
  const c = findComm(err);
  const info: ErrorInfo = { message: err.message, name: err.name, stack: err.stack };
  if (c) {
    info.op = c.op;
    info.seq = c.seq;
    info.axis = c.axis;
    info.abort = c instanceof CommAbortError;
  }
  return info;
}

/** `rank 2 failed in allReduce #7 (axis dp): <message>` or `rank 2 failed: <message>`. */
export function rankFailure(rank: number, info: ErrorInfo, cause?: unknown): RankFailure {
  const where = info.op !== undefined ? ` in ${info.op} #${info.seq} (axis ${info.axis})` : '';
  const f = new RankFailure(`rank ${rank} failed${where}: ${info.message}`, rank, info.op, info.seq, info.axis, { cause });
  if (info.stack && cause === undefined) f.stack = `${f.name}: ${f.message}\n  -- original stack (rank ${rank}) --\n${info.stack}`;
  return f;
}
