import type { Socket } from 'node:net'
import { WebSocket } from 'ws'

/*
 * Frame and byte budgets per WebSocket connection, and a cap on the frames
 * one message may arrive in. ws bounds a message's size (maxPayload) but
 * neither the number of fragments it comes in nor the frames or bytes a
 * connection sends, and it has no per-frame hook or option: a 15 KB message
 * in 15,000 one-byte fragments, a few times a second on 50 connections,
 * stalled the event loop within every message limit. So the raw TCP socket's
 * bytes are metered here: only frame headers (RFC 6455 §5.2) are read, a few
 * comparisons per frame and no allocation; ws still parses and validates
 * everything. Counting happens on the socket's 'data' events, before ws sees
 * the bytes, so an abusive connection is cut before its next chunk is parsed.
 */

const CLOSE_POLICY_VIOLATION = 1008
const OPCODE_CONTINUATION = 0x0
const OPCODE_CLOSE = 0x8

export type FrameAbuse = 'fragments' | 'frames' | 'bytes'

const REASONS: Record<FrameAbuse, string> = {
  fragments: 'too many fragments in one message',
  frames: 'frame rate exceeded',
  bytes: 'byte rate exceeded'
}

export interface FrameMeterOptions {
  /** Frames one message may arrive in (a first frame and its continuations). */
  maxFragments: number
  /** Frames of any kind (data, continuation, ping…) per window. */
  frameRate: number
  /** Bytes on the wire per window. */
  byteRate: number
  windowMs: number
  onAbuse?: (abuse: FrameAbuse) => void
  now?: () => number
}

interface Meter {
  readonly ws: WebSocket
  /** Header bytes of the current frame read so far (0: at a frame boundary). */
  headerRead: number
  /** The header's full length, known once its second byte is in. */
  headerLength: number
  /** FIN bit and opcode (the header's first byte). */
  first: number
  /** Extended payload length bytes (0, 2 or 8). */
  extended: number
  payloadLength: number
  /** Payload bytes of the current frame still to skip. */
  payloadLeft: number
  fragments: number
  windowStart: number
  frames: number
  bytes: number
  cut: boolean
}

const kMeter = Symbol('frameMeter')
type MeteredSocket = Socket & { [kMeter]: Meter }

export function createFrameMeter ({ maxFragments, frameRate, byteRate, windowMs, onAbuse, now = Date.now }: FrameMeterOptions) {
  function cut (meter: Meter, socket: Socket, abuse: FrameAbuse): void {
    meter.cut = true
    onAbuse?.(abuse)
    if (meter.ws.readyState === WebSocket.OPEN) meter.ws.close(CLOSE_POLICY_VIOLATION, REASONS[abuse])
    // Read nothing more: the close frame goes out, then the socket is closed,
    // instead of parsing whatever the peer keeps sending until closeTimeout.
    socket.pause()
    socket.destroySoon()
  }

  /** A frame header is complete: count it. */
  function frame (meter: Meter): FrameAbuse | undefined {
    if (++meter.frames > frameRate) return 'frames'
    const opcode = meter.first & 0x0f
    if (opcode >= OPCODE_CLOSE) return undefined // control frames may come between fragments
    meter.fragments = opcode === OPCODE_CONTINUATION ? meter.fragments + 1 : 1
    if (meter.fragments > maxFragments) return 'fragments'
    if ((meter.first & 0x80) !== 0) meter.fragments = 0 // FIN: the message is complete
    return undefined
  }

  function onData (this: MeteredSocket, chunk: Buffer): void {
    const meter = this[kMeter]
    if (meter.cut) return
    const at = now()
    if (at - meter.windowStart >= windowMs) {
      meter.windowStart = at
      meter.frames = 0
      meter.bytes = 0
    }
    meter.bytes += chunk.length
    if (meter.bytes > byteRate) return cut(meter, this, 'bytes')
    let i = 0
    while (i < chunk.length) {
      if (meter.payloadLeft > 0) {
        const skip = Math.min(meter.payloadLeft, chunk.length - i)
        meter.payloadLeft -= skip
        i += skip
        continue
      }
      const byte = chunk[i++]
      const index = meter.headerRead++
      if (index === 0) {
        meter.first = byte
        continue
      }
      if (index === 1) {
        const length = byte & 0x7f
        meter.extended = length === 126 ? 2 : length === 127 ? 8 : 0
        meter.payloadLength = meter.extended === 0 ? length : 0
        meter.headerLength = 2 + meter.extended + ((byte & 0x80) !== 0 ? 4 : 0)
      } else if (index < 2 + meter.extended) {
        meter.payloadLength = meter.payloadLength * 256 + byte
      }
      if (meter.headerRead === meter.headerLength) {
        meter.headerRead = 0
        meter.payloadLeft = meter.payloadLength
        const abuse = frame(meter)
        if (abuse !== undefined) return cut(meter, this, abuse)
      }
    }
  }

  return {
    /**
     * Meters `socket`, the TCP socket under `ws`. Call it right after the
     * upgrade, in the same tick: bytes that came with the handshake are
     * emitted as 'data' only after ws has set the socket up.
     */
    attach (socket: Socket, ws: WebSocket): void {
      (socket as MeteredSocket)[kMeter] = {
        ws,
        headerRead: 0,
        headerLength: 2,
        first: 0,
        extended: 0,
        payloadLength: 0,
        payloadLeft: 0,
        fragments: 0,
        windowStart: now(),
        frames: 0,
        bytes: 0,
        cut: false
      }
      socket.prependListener('data', onData)
    }
  }
}

export type FrameMeter = ReturnType<typeof createFrameMeter>
