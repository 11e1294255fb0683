import { greetingFallback, offlineReply } from '../fallbacks.js'
import type { ModelProvider, ModelRequest } from '../provider.js'
import { transportFailure } from '../upstream-errors.js'

/*
 * Offline mode (SPEC §4.6): no model, persona-aware canned replies picked by
 * a few keywords of the user's newest message. It never fails; the service
 * answers its replies as fallbacks, without the upstream policy.
 */

const cannedReply = ({ operation, persona, turns }: ModelRequest): string =>
  operation === 'greeting' ? greetingFallback(persona) : offlineReply(persona, turns.at(-1)?.parts.at(-1)?.text ?? '')

export function createOfflineProvider (model: string): ModelProvider {
  return {
    name: 'offline',
    model,
    classify: () => transportFailure(),
    generate: async (request) => ({ text: cannedReply(request) }),
    // Canned replies arrive whole.
    async * stream (request) {
      yield { text: cannedReply(request) }
    }
  }
}
