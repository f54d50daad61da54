// Forked test workers load `ioredis` from LAYERCACHE_TEST_IOREDIS when it is set (node --import this file),
// as vitest's alias does for the test files themselves (scripts/test-ioredis6.mjs): a worker then talks to
// Redis through the same ioredis as the test that forked it. Plain JS: Node loads it before tsx.
import { register } from 'node:module'
import { pathToFileURL } from 'node:url'

const entry = process.env.LAYERCACHE_TEST_IOREDIS
if (entry) register('./ioredis-override-hook.mjs', import.meta.url, { data: pathToFileURL(entry).href })
