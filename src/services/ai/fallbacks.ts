import type { Persona } from '../sessions/store.js'
import { cleanPersona } from './prompt.js'

/*
 * What the companion says when the model does not: offline mode (SPEC §4.6),
 * an unavailable upstream (§4.5) and a withheld reply (§4.7). They speak in
 * the first person and use the companion's name, so a fallback still sounds
 * like the same character.
 */

const nameOf = (persona: Persona) => cleanPersona(persona).name || 'your companion'

export function greetingFallback (persona: Persona): string {
  return `Hi, I'm ${nameOf(persona)}! I'm really happy you're here. How has your day been so far?`
}

export function unavailableReply (persona: Persona): string {
  return `Sorry, it's ${nameOf(persona)}. My thoughts got a little tangled just now. Could you say that again in a moment?`
}

export function blockedReply (): string {
  return 'Hmm, I\'d rather not go there. Let\'s talk about something else: what made you smile today?'
}

const OFFLINE_REPLIES: Array<[RegExp, (name: string) => string]> = [
  [/\b(bye|goodbye|good ?night|see (you|ya)|talk (to you )?later|gotta go)\b/, () => 'Bye for now! I\'ll be right here whenever you want to talk again.'],
  [/\b(thanks|thank you|thx|ty)\b/, () => 'Anytime. That\'s what I\'m here for.'],
  [/\b(how are (you|u)|how'?s it going|how have you been|how do you feel)\b/, (name) => `${name} is doing well, especially now that you're here. How are you feeling today?`],
  [/\b(hello|hi|hey|hiya|good (morning|afternoon|evening))\b/, (name) => `Hey you! It's ${name}. What are you up to right now?`]
]

/** A canned, persona-aware reply for offline mode, chosen by a few keywords of the message. */
export function offlineReply (persona: Persona, message: string): string {
  const name = nameOf(persona)
  const lower = message.toLowerCase()
  for (const [pattern, reply] of OFFLINE_REPLIES) {
    if (pattern.test(lower)) return reply(name)
  }
  return `I love hearing from you, tell me more! (I'm ${name} in offline mode, so my answers are simple for now.)`
}
