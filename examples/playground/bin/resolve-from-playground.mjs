// Registers the resolve hook below (node --import this file).
import { register } from 'node:module'

register('./resolve-from-playground-hook.mjs', import.meta.url)
