// Builds the optional native addon at install time. A failed build is not an install failure:
// seqpar then runs on the js backend and says why in one warning line.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';

if (!existsSync('binding.gyp')) process.exit(0);
const gyp = process.platform === 'win32' ? 'node-gyp.cmd' : 'node-gyp';
const r = spawnSync(gyp, ['rebuild', '--silent'], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  const why = (r.stderr || String(r.error || '')).trim().split('\n').filter(Boolean).slice(-1)[0] ?? 'unknown error';
  mkdirSync('build', { recursive: true });
  writeFileSync('build/native-build-error.txt', why + '\n');
  console.warn(`seqpar: native addon did not build (${why}); the js backend will be used`);
}
process.exit(0);
