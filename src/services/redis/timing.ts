/**
 * REDIS_COMMAND_TIMEOUT_MS's default, for the modules that plan around the
 * command timeout (the recording deadline, the fan-out reader) when they are
 * built without the config, as in tests. A module of its own so that they do
 * not load ioredis without REDIS_URL.
 */
export const COMMAND_TIMEOUT_MS = 1000
