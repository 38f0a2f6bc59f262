/*
 * The playground's script (served by the service at /playground/playground.js; no framework, nothing
 * fetched from elsewhere). It posts the typed matrices to the service's own routes with
 * "explain": true and draws the operands and the result as grids: pointing at, tapping or tabbing to
 * a result cell highlights the operands' cells it came from (marked by outline and weight, not by
 * colour alone) and shows the service's explanation of it.
 */
/* global document, fetch, window */
'use strict'

const byId = (id) => document.getElementById(id)

/** The matrix typed in a textarea: one row per line, numbers split by spaces, commas or semicolons. */
function parseMatrix (text, name) {
  const lines = text.split('\n').map(l => l.trim()).filter(l => l.length > 0)
  if (lines.length === 0) throw new Error(`${name} is empty: type one row per line`)
  const rows = lines.map((line, r) => line.split(/[\s,;]+/).filter(t => t.length > 0).map((token) => {
    const x = Number(token)
    if (token === '' || !Number.isFinite(x)) throw new Error(`${name}, row ${r + 1}: "${token}" is not a number`)
    return x
  }))
  const width = rows[0].length
  rows.forEach((row, r) => {
    if (row.length !== width) throw new Error(`${name}: row ${r + 1} has ${row.length} numbers, row 1 has ${width}`)
  })
  return rows
}

function numberField (id, name, min) {
  const x = Number(byId(id).value)
  if (!Number.isFinite(x) || (min !== undefined && (x < min || !Number.isInteger(x)))) {
    throw new Error(`${name} must be ${min === undefined ? 'a number' : `an integer of at least ${min}`}`)
  }
  return x
}

/** A value as the reply printed it ("NaN" and the infinities come as strings). */
const show = (x) => String(x)

/** A table of cells; `button` makes them focusable buttons. Returns the cells as rows of elements. */
function grid (parent, title, matrix, { button = false, label } = {}) {
  const figure = document.createElement('figure')
  figure.className = 'matrix'
  const caption = document.createElement('figcaption')
  caption.textContent = title
  figure.append(caption)
  const table = document.createElement('table')
  table.setAttribute('aria-label', title)
  const cells = matrix.map((row, i) => {
    const tr = document.createElement('tr')
    const rowCells = row.map((value, j) => {
      const td = document.createElement('td')
      if (button) {
        const b = document.createElement('button')
        b.type = 'button'
        b.className = 'cell'
        b.textContent = show(value)
        b.dataset.i = String(i)
        b.dataset.j = String(j)
        b.setAttribute('aria-label', `${label}[${i},${j}] = ${show(value)}`)
        td.append(b)
      } else {
        td.textContent = show(value)
      }
      tr.append(td)
      return td
    })
    table.append(tr)
    return rowCells
  })
  figure.append(table)
  parent.append(figure)
  return { figure, table, cells }
}

/** Clears the highlights of the last cell. */
function clearMarks () {
  for (const el of document.querySelectorAll('.hl, .sel')) {
    el.classList.remove('hl', 'sel')
    delete el.dataset.w
  }
}

function showExplanation (entry, steps) {
  byId('explain-text').textContent = entry.text
  const list = byId('explain-steps')
  list.replaceChildren(...steps.map((s) => {
    const li = document.createElement('li')
    li.textContent = s
    return li
  }))
}

/** Calls `pick` with the result cell under the pointer, tap or focus. */
function onCell (table, pick) {
  const handler = (event) => {
    const b = event.target.closest('button.cell')
    if (b === null) return
    clearMarks()
    b.closest('td').classList.add('sel')
    pick(Number(b.dataset.i), Number(b.dataset.j))
  }
  table.addEventListener('mouseover', handler)
  table.addEventListener('focusin', handler)
  table.addEventListener('click', handler)
}

const pairsText = (pairs) => pairs.map(([a, b]) => `${show(a)} × ${show(b)}`)

const MODES = {
  matmul: {
    body () {
      return { a: parseMatrix(byId('matmul-a').value, 'A'), b: parseMatrix(byId('matmul-b').value, 'B') }
    },
    render (body, reply, grids) {
      const c = reply.result.data
      const a = grid(grids, `A (${body.a.length}×${body.a[0].length})`, body.a)
      const b = grid(grids, `B (${body.b.length}×${body.b[0].length})`, body.b)
      const out = grid(grids, `C = A·B (${c.length}×${c[0].length})`, c, { button: true, label: 'C' })
      const n = c[0].length
      onCell(out.table, (i, j) => {
        for (const td of a.cells[i]) td.classList.add('hl')
        for (const row of b.cells) row[j].classList.add('hl')
        const e = reply.explanation[i * n + j]
        showExplanation(e, pairsText(e.products))
      })
    }
  },

  linear: {
    body () {
      const bias = byId('linear-bias').value.trim()
      return {
        input: parseMatrix(byId('linear-input').value, 'Input'),
        weights: parseMatrix(byId('linear-weights').value, 'Weights'),
        ...(bias === '' ? {} : { bias: parseMatrix(bias, 'Bias')[0] }),
        activation: byId('linear-activation').value
      }
    },
    render (body, reply, grids) {
      const out = reply.result.data
      const x = grid(grids, `Input (${body.input.length}×${body.input[0].length})`, body.input)
      const w = grid(grids, `Weights (${body.weights.length}×${body.weights[0].length})`, body.weights)
      const b = body.bias === undefined ? null : grid(grids, `Bias (${body.bias.length})`, [body.bias])
      const o = grid(grids, `Output = ${body.activation}(input·weights + bias) (${out.length}×${out[0].length})`, out, { button: true, label: 'out' })
      const n = out[0].length
      onCell(o.table, (i, j) => {
        for (const td of x.cells[i]) td.classList.add('hl')
        for (const row of w.cells) row[j].classList.add('hl')
        if (b !== null) b.cells[0][j].classList.add('hl')
        const e = reply.explanation[i * n + j]
        const steps = pairsText(e.products)
        if (e.bias !== undefined) steps.push(`bias ${show(e.bias)}`)
        if (e.activation !== undefined) steps.push(`${e.activation} of ${show(e.preActivation)}${e.row === undefined ? '' : ` in its row [${e.row.map(show).join(', ')}]`}`)
        showExplanation(e, steps)
      })
    }
  },

  conv2d: {
    body () {
      const input = parseMatrix(byId('conv2d-input').value, 'Input')
      const kernel = parseMatrix(byId('conv2d-kernel').value, 'Kernel')
      return {
        input: [[input]],
        kernel: [[kernel]],
        bias: [numberField('conv2d-bias', 'Bias')],
        stride: numberField('conv2d-stride', 'Stride', 1),
        padding: numberField('conv2d-padding', 'Padding', 0)
      }
    },
    render (body, reply, grids) {
      const input = body.input[0][0]
      const kernel = body.kernel[0][0]
      const out = reply.result.data[0][0]
      const x = grid(grids, `Input (${input.length}×${input[0].length})`, input)
      grid(grids, `Kernel (${kernel.length}×${kernel[0].length}), bias ${body.bias[0]}`, kernel)
      const o = grid(grids, `Output (${out.length}×${out[0].length})`, out, { button: true, label: 'out' })
      const ow = out[0].length
      onCell(o.table, (oy, ox) => {
        // the kernel's window on the input; taps in the padding add nothing
        for (let ky = 0; ky < kernel.length; ky++) {
          for (let kx = 0; kx < kernel[0].length; kx++) {
            const y = oy * body.stride - body.padding + ky
            const xx = ox * body.stride - body.padding + kx
            if (y < 0 || y >= input.length || xx < 0 || xx >= input[0].length) continue
            const td = x.cells[y][xx]
            td.classList.add('hl')
            td.dataset.w = `×${kernel[ky][kx]}`
          }
        }
        const e = reply.explanation[oy * ow + ox]
        const steps = e.channels.flatMap(ch => pairsText(ch.products))
        steps.push(`bias ${show(e.bias)}`)
        showExplanation(e, steps)
      })
    }
  },

  attention: {
    body () {
      return {
        query: parseMatrix(byId('attention-query').value, 'Q'),
        key: parseMatrix(byId('attention-key').value, 'K'),
        value: parseMatrix(byId('attention-value').value, 'V'),
        causal: byId('attention-causal').checked,
        returnWeights: true
      }
    },
    render (body, reply, grids) {
      const q = grid(grids, `Q (${body.query.length}×${body.query[0].length})`, body.query)
      grid(grids, `K (${body.key.length}×${body.key[0].length})`, body.key)
      const v = grid(grids, `V (${body.value.length}×${body.value[0].length})`, body.value)
      const weights = reply.weights.data
      const w = heatMap(grids, weights)
      const out = reply.result.data
      const o = grid(grids, `Output = weights·V (${out.length}×${out[0].length})`, out, { button: true, label: 'out' })
      const n = out[0].length
      onCell(o.table, (i, j) => {
        for (const td of q.cells[i]) td.classList.add('hl')
        for (const td of w.cells[i]) td.classList.add('hl')
        for (const row of v.cells) row[j].classList.add('hl')
        const e = reply.explanation[i * n + j]
        const steps = e.scores.map((s, t) => `score ${t}: ${pairsText(s.products).join(' + ')} → ${show(s.value)}`)
        steps.push(`weights: softmax of the scores = [${e.weights.map(show).join(', ')}]`)
        steps.push(...pairsText(e.products))
        showExplanation(e, steps)
      })
    }
  }
}

/** The attention weights as a heat map: the value printed in each cell, its shade from it, and each row's sum. */
function heatMap (parent, weights) {
  const withSums = weights.map(row => [...row, row.reduce((s, x) => s + Number(x), 0)])
  const map = grid(parent, `Weights = softmax(Q·Kᵀ/√E), rows sum to 1 (${weights.length}×${weights[0].length}, last column: Σ)`, withSums)
  map.figure.classList.add('heat')
  map.cells.forEach((row) => {
    row.forEach((td, t) => {
      const x = Number(td.textContent)
      if (t === row.length - 1) {
        td.classList.add('sum')
        td.textContent = `Σ ${x.toFixed(3)}`
        return
      }
      td.title = td.textContent
      td.textContent = x.toFixed(3)
      // the shade repeats the printed value (CSSOM, which the content security policy allows)
      td.style.backgroundColor = `rgba(29, 78, 216, ${Math.min(1, Math.max(0, x)) * 0.85})`
      if (x > 0.5) td.classList.add('dark')
    })
    row.pop()
  })
  return map
}

let mode = 'matmul'
let asked = 0
/** The computation typing schedules (400 ms after the last keystroke). */
let timer

async function compute () {
  // any computation replaces the one typing scheduled, which would otherwise redraw the grids
  // (and drop the focus and the highlights) a moment after a click on Compute
  window.clearTimeout(timer)
  const error = byId('error')
  const output = byId('output')
  const spec = MODES[mode]
  let body
  try {
    body = { ...spec.body(), dtype: byId('dtype').value, explain: true }
  } catch (err) {
    error.textContent = err.message
    error.hidden = false
    return
  }
  const headers = { 'content-type': 'application/json', accept: 'application/json' }
  const key = byId('api-key').value.trim()
  if (key !== '') headers['x-api-key'] = key
  const mine = ++asked
  let reply
  try {
    const res = await fetch(`v1/${mode}`, { method: 'POST', headers, body: JSON.stringify(body) })
    reply = await res.json()
    if (mine !== asked) return // a later request's answer will be drawn
    if (!res.ok) throw new Error(`${res.status} ${reply.code}: ${reply.message}`)
  } catch (err) {
    if (mine !== asked) return
    error.textContent = err.message
    error.hidden = false
    return
  }
  error.hidden = true
  const grids = byId('grids')
  grids.replaceChildren()
  spec.render(body, reply, grids)
  byId('explain-text').textContent = 'Hover, tap or tab to a result cell.'
  byId('explain-steps').replaceChildren()
  output.hidden = false
}

function selectMode (next) {
  mode = next
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.dataset.mode === next
    tab.setAttribute('aria-selected', String(on))
    tab.tabIndex = on ? 0 : -1
    byId(tab.getAttribute('aria-controls')).hidden = !on
  }
  compute()
}

function start () {
  const tabs = [...document.querySelectorAll('[role="tab"]')]
  for (const tab of tabs) tab.addEventListener('click', () => selectMode(tab.dataset.mode))
  // arrow keys move between the tabs, as in any tab list
  byId('modes').addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowRight' && event.key !== 'ArrowLeft') return
    const at = tabs.findIndex(t => t.dataset.mode === mode)
    const next = tabs[(at + (event.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length]
    next.focus()
    selectMode(next.dataset.mode)
  })
  byId('inputs').addEventListener('submit', (event) => {
    event.preventDefault()
    compute()
  })
  byId('inputs').addEventListener('input', () => {
    window.clearTimeout(timer)
    timer = window.setTimeout(compute, 400)
  })
  compute()
}

start()
