import { defineConfig, type Options } from 'tsup'
import base from '../../tsup.config.base'

// The shared build, plus the `layercache` command: src/cli.ts starts with its `#!/usr/bin/env node`
// line, which esbuild keeps at the top of dist/cli.js (the package's "bin").
export default defineConfig({ ...(base as Options), entry: ['src/index.ts', 'src/cli.ts'] })
