/*
 * Text that other people (or the model) are shown as a name or a description:
 * persona fields and player names. Shared by the AI prompt and the chat
 * protocol, so both clean it the same way.
 */

// Every Unicode format character (zero-width, bidi controls, tag characters
// U+E0001–U+E007F, soft hyphen, …) and the unassigned rest of the tag block:
// invisible to a person reading it, visible to the model.
const INVISIBLE = /[\p{Cf}\u{E0000}-\u{E007F}]/gu

/** NFKC-normalised, without invisible characters, trimmed. */
export function cleanVisibleText (value: string): string {
  return value.normalize('NFKC').replace(INVISIBLE, '').trim()
}
