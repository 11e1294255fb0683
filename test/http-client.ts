/* HTTP clients of the AI routes for tests against a listening server: JSON and Server-Sent Events (a raw request to hang up on: helper.ts rawPost). */

export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal })

export const SSE = { accept: 'text/event-stream' }

/** `event: x\ndata: {…}\n\n` frames → [{ event, data }]. */
export function parseEvents (text: string): Array<{ event: string, data: any }> {
  return text.split('\n\n').filter(Boolean).map((frame) => {
    const [eventLine, dataLine, ...rest] = frame.split('\n')
    if (!eventLine.startsWith('event: ') || !dataLine.startsWith('data: ') || rest.length > 0) throw new Error(`bad frame: ${frame}`)
    return { event: eventLine.slice(7), data: JSON.parse(dataLine.slice(6)) }
  })
}
