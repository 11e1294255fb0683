declare module 'pino-roll' {
  import type { SonicBoom, SonicBoomOpts } from 'sonic-boom'

  export interface PinoRollOptions extends Omit<SonicBoomOpts, 'dest'> {
    file: string | (() => string)
    size?: string | number
    frequency?: 'daily' | 'hourly' | number
    extension?: string
    symlink?: boolean
    dateFormat?: string
    limit?: { count?: number, removeOtherLogFiles?: boolean }
  }

  export default function roll (options: PinoRollOptions): Promise<SonicBoom>
}
