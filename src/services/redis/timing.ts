/**
 * How long a Redis command may take before it fails (connection.ts), apart
 * from ioredis so the modules that plan around it (recording deadlines, the
 * fan-out reader) do not load ioredis without REDIS_URL.
 */
export const COMMAND_TIMEOUT_MS = 1000
