import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { SERVICE_NAME, VERSION } from '../version.js'

const ServiceInfo = Type.Object({
  name: Type.String(),
  version: Type.String(),
  docs: Type.String(),
  health: Type.String(),
  dashboard: Type.String()
})

const info = { name: SERVICE_NAME, version: VERSION, docs: '/docs', health: '/health', dashboard: '/dashboard' }

const root: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/', {
    schema: { summary: 'Service name, version and where to look next', response: { 200: ServiceInfo } }
  }, async () => info)
}

export default root
