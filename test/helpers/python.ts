/**
 * Tests that run Debian's Python (/usr/bin/python3) with some of its packages follow the policy
 * of the other tests that need a system tool (skipWithout, test/deploy/helpers.ts): where the
 * interpreter or a module is missing, they are skipped with a visible reason outside CI, and run
 * (so fail) in CI, whose .ci/run installs them.
 */
import { spawnSync } from 'node:child_process'

export const PYTHON = '/usr/bin/python3'

/** The Debian package of each module these tests import. */
const PACKAGES: Record<string, string> = { numpy: 'python3-numpy', requests: 'python3-requests' }

/** The modules of `modules` that /usr/bin/python3 cannot import (all of them without the interpreter). */
export function missingPython (modules: string[]): string[] {
  const probe = 'import importlib.util, sys\nprint(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))'
  const r = spawnSync(PYTHON, ['-c', probe, ...modules], { encoding: 'utf8' })
  if (r.error !== undefined || r.status !== 0) return modules
  return r.stdout.trim().split(/\s+/).filter(m => m !== '')
}

/**
 * Whether tests that need these modules are skipped (only outside CI), and the note for their
 * title: ' - SKIPPED: …' with what to install, or ''.
 */
export function skipWithoutPython (modules: string[]): { skip: boolean, note: string } {
  const missing = missingPython(modules)
  const skip = missing.length > 0 && (process.env.CI === undefined || process.env.CI === '')
  const install = ['python3', ...missing.map(m => PACKAGES[m] ?? `python3-${m}`)].join(' ')
  return { skip, note: skip ? ` - SKIPPED: ${PYTHON} lacks ${missing.join(', ')} (apt-get install -y ${install}); in CI it always runs` : '' }
}
