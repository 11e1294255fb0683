/*
 * The set of alerts in force. Rules (in metrics.ts) report each condition on
 * every evaluation; only a change (started or cleared) reaches `onChange`, so
 * an alert is logged once when it starts and once when it clears, however
 * often it is evaluated. Nothing is allocated while nothing changes.
 */

export type AlertLevel = 'warning' | 'critical'

export interface Alert {
  name: string
  level: AlertLevel
  /** The measured figure: the latest one while active, the last one once cleared. */
  value: number
  threshold: number
  /** ISO time the alert started. */
  since: string
}

export type AlertChange = 'started' | 'cleared'

export interface AlertBookOptions {
  onChange: (change: AlertChange, alert: Readonly<Alert>) => void
  now?: () => number
}

export function createAlertBook ({ onChange, now = Date.now }: AlertBookOptions) {
  const active = new Map<string, Alert>()
  // Rebuilt only on a change, so readers (every /health probe) share one
  // array; they must not modify it.
  let list: Alert[] = []

  function set (name: string, level: AlertLevel, on: boolean, value: number, threshold: number): void {
    const current = active.get(name)
    if (on) {
      if (current !== undefined) {
        current.value = value
        return
      }
      const alert = { name, level, value, threshold, since: new Date(now()).toISOString() }
      active.set(name, alert)
      list = [...active.values()]
      onChange('started', alert)
    } else if (current !== undefined) {
      current.value = value
      active.delete(name)
      list = [...active.values()]
      onChange('cleared', current)
    }
  }

  return {
    set,
    isActive: (name: string) => active.has(name),
    list: (): Alert[] => list
  }
}

export type AlertBook = ReturnType<typeof createAlertBook>
