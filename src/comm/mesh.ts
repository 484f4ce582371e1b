/**
 * DeviceMesh: named axes over the world's ranks, outer → inner: dp, sp, tp, with sp split into
 * ring × ulysses where ulysses is the INNER (contiguous) factor, as in yunchang/USP: Ulysses
 * all-to-alls are the heavier traffic and should stay between neighbouring ranks (same node).
 *
 *   rank = ((d·ring + r)·ulysses + u)·tp + t,   sp index s = r·ulysses + u
 *
 * Unsplit sp defaults to ring = sp, ulysses = 1 (a pure ring over sp; `ringNext/ringPrev` then
 * walk the sp ranks). Every rank creates every group of every axis in the same order (newGroup is
 * a world collective) and keeps the ones it belongs to.
 */
import type { AxisName, ProcessGroup, CommRecord, World } from './types.js';

export type MeshAxis = 'dp' | 'sp' | 'tp' | 'ulysses' | 'ring';
export const MESH_AXES: readonly MeshAxis[] = ['dp', 'sp', 'tp', 'ulysses', 'ring'];

export interface MeshSpec {
  dp?: number;
  sp?: number;
  tp?: number;
  /** Inner factor of sp. With only one of ulysses/ring given, the other is sp / it. */
  ulysses?: number;
  ring?: number;
}

export interface MeshShape {
  readonly dp: number;
  readonly sp: number;
  readonly tp: number;
  readonly ulysses: number;
  readonly ring: number;
}

export type MeshCoords = Readonly<Record<MeshAxis, number>>;

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`mesh: ${name} must be a positive integer, got ${v}`);
  return v;
}

/** Resolves defaults and checks the shape against the world size. */
export function meshShape(spec: MeshSpec, worldSize: number): MeshShape {
  const dp = positiveInt('dp', spec.dp ?? 1);
  const sp = positiveInt('sp', spec.sp ?? 1);
  const tp = positiveInt('tp', spec.tp ?? 1);
  if (dp * sp * tp !== worldSize) throw new RangeError(`dp(${dp})*sp(${sp})*tp(${tp}) != world(${worldSize})`);
  let { ulysses, ring } = spec;
  if (ulysses === undefined && ring === undefined) [ulysses, ring] = [1, sp];
  else if (ulysses === undefined) ulysses = sp / positiveInt('ring', ring!);
  else if (ring === undefined) ring = sp / positiveInt('ulysses', ulysses);
  if (!Number.isInteger(ulysses) || !Number.isInteger(ring) || ulysses! * ring! !== sp) {
    throw new RangeError(`ulysses(${spec.ulysses ?? '?'})*ring(${spec.ring ?? '?'}) != sp(${sp})`);
  }
  positiveInt('ulysses', ulysses!);
  positiveInt('ring', ring!);
  return { dp, sp, tp, ulysses: ulysses!, ring: ring! };
}

/** Independent dims, outer → inner; each axis is the set of dims it varies. */
const DIMS = ['dp', 'ring', 'ulysses', 'tp'] as const;
type Dim = (typeof DIMS)[number];
const AXIS_DIMS: Record<MeshAxis, readonly Dim[]> = {
  dp: ['dp'],
  sp: ['ring', 'ulysses'],
  tp: ['tp'],
  ulysses: ['ulysses'],
  ring: ['ring'],
};

export class DeviceMesh {
  readonly rank: number;
  readonly coords: MeshCoords;
  private readonly groups = new Map<MeshAxis, ProcessGroup>();

  private constructor(
    readonly shape: MeshShape,
    readonly world: World,
  ) {
    this.rank = world.rank;
    this.coords = this.coordsOf(world.rank);
    // Same creation order on every rank: axis by axis, groups by their lowest member rank.
    for (const axis of MESH_AXES) {
      const seen = new Set<string>();
      for (let r = 0; r < world.size; r++) {
        const key = this.groupKey(r, axis);
        if (seen.has(key)) continue;
        seen.add(key);
        const members = this.membersOf(r, axis);
        const g = world.newGroup(members, axis);
        if (members.includes(this.rank)) this.groups.set(axis, g);
      }
    }
  }

  static create(spec: MeshSpec, world: World): DeviceMesh {
    return new DeviceMesh(meshShape(spec, world.size), world);
  }

  /** The group along `axis` that contains this rank ('world' is the world group). */
  group(axis: MeshAxis | 'world'): ProcessGroup {
    if (axis === 'world') return this.world.group;
    const g = this.groups.get(axis);
    if (!g) throw new RangeError(`mesh: unknown axis '${String(axis)}' (one of ${MESH_AXES.join(', ')}, world)`);
    return g;
  }

  size(axis: MeshAxis): number {
    return this.shape[axis];
  }

  coord(axis: MeshAxis): number {
    return this.coords[axis];
  }

  /** Group-local rank of the successor along `axis` (cyclic); default the ring axis. */
  next(axis: MeshAxis = 'ring'): number {
    return (this.coords[axis] + 1) % this.shape[axis];
  }

  prev(axis: MeshAxis = 'ring'): number {
    return (this.coords[axis] - 1 + this.shape[axis]) % this.shape[axis];
  }

  get ringNext(): number {
    return this.next('ring');
  }

  get ringPrev(): number {
    return this.prev('ring');
  }

  coordsOf(rank: number): MeshCoords {
    const { ring, ulysses, tp } = this.shape;
    const t = rank % tp;
    const u = Math.floor(rank / tp) % ulysses;
    const r = Math.floor(rank / (tp * ulysses)) % ring;
    const d = Math.floor(rank / (tp * ulysses * ring));
    return { dp: d, sp: r * ulysses + u, tp: t, ulysses: u, ring: r };
  }

  /** Global rank at the given coordinates (sp, or ring and ulysses). */
  rankAt(c: { dp?: number; sp?: number; tp?: number; ulysses?: number; ring?: number }): number {
    const { ring, ulysses, tp } = this.shape;
    const r = c.sp !== undefined ? Math.floor(c.sp / ulysses) : (c.ring ?? 0);
    const u = c.sp !== undefined ? c.sp % ulysses : (c.ulysses ?? 0);
    return (((c.dp ?? 0) * ring + r) * ulysses + u) * tp + (c.tp ?? 0);
  }

  /** Sum of logged bytes over this rank's mesh groups (and the world group). */
  totalBytes(filter: { op?: CommRecord['op']; axis?: AxisName } = {}): number {
    let s = this.world.group.log.totalBytes(filter);
    for (const g of this.groups.values()) s += g.log.totalBytes(filter);
    return s;
  }

  private dimsOf(rank: number): Record<Dim, number> {
    const c = this.coordsOf(rank);
    return { dp: c.dp, ring: c.ring, ulysses: c.ulysses, tp: c.tp };
  }

  private groupKey(rank: number, axis: MeshAxis): string {
    const d = this.dimsOf(rank);
    return DIMS.map((k) => (AXIS_DIMS[axis].includes(k) ? '*' : d[k])).join(',');
  }

  /** Members of `rank`'s group along `axis`, in group order (outer varying dim first). */
  private membersOf(rank: number, axis: MeshAxis): number[] {
    const base = this.dimsOf(rank);
    const vary = AXIS_DIMS[axis];
    let combos: Record<Dim, number>[] = [{ ...base }];
    for (const dim of vary) {
      const next: Record<Dim, number>[] = [];
      for (const c of combos) for (let i = 0; i < this.shape[dim]; i++) next.push({ ...c, [dim]: i });
      combos = next;
    }
    return combos.map((c) => this.rankAt({ dp: c.dp, ring: c.ring, ulysses: c.ulysses, tp: c.tp }));
  }
}
