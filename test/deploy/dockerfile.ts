/**
 * A small Dockerfile parser for the deployment tests: the instructions this repository's
 * Dockerfile uses (FROM, WORKDIR, COPY, RUN, ENV, USER, CMD, ENTRYPOINT, HEALTHCHECK, EXPOSE,
 * ARG, LABEL), with line continuations, comments, `--flag=value` options and JSON exec forms.
 * Anything else (ADD, ONBUILD, SHELL, heredocs, ...) is an error, so a test never silently
 * skips an instruction whose effect it does not reproduce.
 */

export interface Instruction {
  /** Upper-case keyword. */
  keyword: string
  /** `--name=value` options before the arguments (`--from=build`, `--interval=30s`). */
  flags: Record<string, string>
  /** The text after the keyword and the flags, continuations joined. */
  args: string
  /** 1-based line where the instruction starts. */
  line: number
}

export interface Stage {
  /** The FROM image. */
  image: string
  /** The `AS name`, or the stage's index as a string. */
  name: string
  instructions: Instruction[]
}

export interface Dockerfile {
  stages: Stage[]
  /** Stage by name. */
  stage: (name: string) => Stage
}

const KNOWN = new Set(['FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'CMD', 'ENTRYPOINT', 'HEALTHCHECK', 'EXPOSE', 'ARG', 'LABEL'])

/** Splits the file into logical lines: comments dropped, `\` continuations joined. */
function logicalLines (text: string): Array<{ text: string, line: number }> {
  const out: Array<{ text: string, line: number }> = []
  const lines = text.split(/\r?\n/)
  let current: string | null = null
  let start = 0
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]
    const trimmed = raw.trim()
    // a comment line (parser directives included) is dropped, even inside a continuation
    if (trimmed.startsWith('#')) continue
    if (current === null) {
      if (trimmed === '') continue
      current = ''
      start = i + 1
    }
    if (trimmed.endsWith('\\')) {
      current += trimmed.slice(0, -1) + ' '
      continue
    }
    current += trimmed
    out.push({ text: current.trim(), line: start })
    current = null
  }
  if (current !== null) throw new Error(`Dockerfile: a continuation at line ${start} runs off the end`)
  return out
}

export function parseDockerfile (text: string): Dockerfile {
  const stages: Stage[] = []
  for (const { text: lineText, line } of logicalLines(text)) {
    const m = /^(\S+)\s*(.*)$/s.exec(lineText)
    if (m === null) continue
    const keyword = m[1].toUpperCase()
    if (!KNOWN.has(keyword)) throw new Error(`Dockerfile line ${line}: ${keyword} is not supported by this parser`)
    let rest = m[2]
    const flags: Record<string, string> = {}
    for (;;) {
      const f = /^--([a-z-]+)=(\S+)\s*/.exec(rest)
      if (f === null) break
      flags[f[1]] = f[2]
      rest = rest.slice(f[0].length)
    }
    if (rest.startsWith('--')) throw new Error(`Dockerfile line ${line}: option ${rest.split(/\s/)[0]} is not supported by this parser`)
    if (/<<-?\w/.test(rest) && (keyword === 'RUN' || keyword === 'COPY')) throw new Error(`Dockerfile line ${line}: heredocs are not supported by this parser`)
    const instruction: Instruction = { keyword, flags, args: rest, line }
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)
      if (from === null) throw new Error(`Dockerfile line ${line}: cannot read FROM ${rest}`)
      stages.push({ image: from[1], name: from[2] ?? String(stages.length), instructions: [] })
      continue
    }
    if (stages.length === 0) {
      if (keyword === 'ARG') continue
      throw new Error(`Dockerfile line ${line}: ${keyword} before the first FROM`)
    }
    stages[stages.length - 1].instructions.push(instruction)
  }
  return {
    stages,
    stage (name: string): Stage {
      const s = stages.find((st) => st.name === name)
      if (s === undefined) throw new Error(`Dockerfile has no stage ${name}`)
      return s
    }
  }
}

/** The exec (JSON array) form of CMD, ENTRYPOINT, RUN or HEALTHCHECK CMD; throws on the shell form. */
export function execForm (args: string): string[] {
  const value: unknown = JSON.parse(args)
  if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string')) {
    throw new Error(`not an exec form: ${args}`)
  }
  return value as string[]
}

/** `ENV a=1 b="x y"` (or the legacy `ENV a 1`) as key/value pairs, in order. */
export function parseEnv (args: string): Array<[string, string]> {
  const legacy = /^([A-Za-z_][A-Za-z0-9_]*)\s+([^=]*)$/.exec(args)
  if (legacy !== null) return [[legacy[1], legacy[2].trim()]]
  const out: Array<[string, string]> = []
  const re = /([A-Za-z_][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S*))\s*/gy
  let pos = 0
  while (pos < args.length) {
    re.lastIndex = pos
    const m = re.exec(args)
    if (m === null) throw new Error(`cannot read ENV ${args}`)
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? m[4])
    out.push([m[1], value])
    pos = re.lastIndex
  }
  return out
}

/** COPY's sources and destination (whitespace-separated form, or the JSON form). */
export function parseCopy (args: string): { sources: string[], dest: string } {
  const parts = args.trim().startsWith('[') ? execForm(args) : args.trim().split(/\s+/)
  if (parts.length < 2) throw new Error(`COPY needs a source and a destination: ${args}`)
  return { sources: parts.slice(0, -1), dest: parts[parts.length - 1] }
}

/** HEALTHCHECK's options and its CMD (exec form); NONE gives null. */
export function parseHealthcheck (instruction: Instruction): { options: Record<string, string>, command: string[] } | null {
  if (/^NONE$/i.test(instruction.args.trim())) return null
  const m = /^CMD\s+(.*)$/is.exec(instruction.args.trim())
  if (m === null) throw new Error(`cannot read HEALTHCHECK ${instruction.args}`)
  return { options: instruction.flags, command: execForm(m[1]) }
}

/** Splits a RUN shell command on `&&` (quotes respected) into its commands, each as words. */
export function splitRun (command: string): string[][] {
  const commands: string[][] = []
  let words: string[] = []
  let word = ''
  let inWord = false
  let quote: string | null = null
  const endWord = (): void => {
    if (inWord) words.push(word)
    word = ''
    inWord = false
  }
  for (let i = 0; i < command.length; i++) {
    const c = command[i]
    if (quote !== null) {
      if (c === quote) quote = null
      else word += c
      continue
    }
    if (c === '"' || c === '\'') {
      quote = c
      inWord = true
    } else if (c === '&' && command[i + 1] === '&') {
      endWord()
      commands.push(words)
      words = []
      i++
    } else if (/[;|<>`$()]/.test(c)) {
      throw new Error(`RUN uses shell syntax (${c}) that this test does not reproduce: ${command}`)
    } else if (/\s/.test(c)) {
      endWord()
    } else {
      word += c
      inWord = true
    }
  }
  if (quote !== null) throw new Error(`unbalanced quote in RUN ${command}`)
  endWord()
  commands.push(words)
  return commands.filter((w) => w.length > 0)
}

/**
 * Whether `.dockerignore` keeps `path` (relative to the context, `/`-separated) out of the build
 * context: Docker's rules for the patterns used here (`*`, `?`, `**`, `!` exceptions, the last
 * matching pattern wins, a pattern that matches a directory excludes everything under it).
 */
export function dockerIgnored (patterns: string[], path: string): boolean {
  let ignored = false
  const parts = path.split('/')
  for (const rawPattern of patterns) {
    const negate = rawPattern.startsWith('!')
    const pattern = (negate ? rawPattern.slice(1) : rawPattern).replace(/^\/+/, '').replace(/\/+$/, '')
    const re = new RegExp('^' + pattern.split('**').map((seg) =>
      seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')
    ).join('.*') + '$')
    // the path itself or any directory above it
    let matches = false
    for (let i = 1; i <= parts.length; i++) {
      if (re.test(parts.slice(0, i).join('/'))) {
        matches = true
        break
      }
    }
    if (matches) ignored = !negate
  }
  return ignored
}

/** The patterns of a `.dockerignore` file. */
export function parseDockerignore (text: string): string[] {
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
}
