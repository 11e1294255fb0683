import neostandard from 'neostandard'

export default neostandard({
  ts: true,
  ignores: ['dist/**', 'bench/results/**', 'node_modules/**', 'logs/**', '.tap/**', 'coverage/**']
})
