const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/**
 * FNV-1a (32 bit) over the UTF-8 bytes of `text`, the bytes Redis stores for it, without allocating
 * them. Keys never hold unpaired surrogates (they are refused), so every code point has its UTF-8 form.
 */
export function fnv1aUtf8(text: string): number {
  let hash = FNV_OFFSET
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i)
    if (code < 0x80) {
      hash = Math.imul(hash ^ code, FNV_PRIME)
      continue
    }
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1)
      if (low >= 0xdc00 && low <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
        i++
      }
    } else if (code >= 0xd800 && code <= 0xdfff) {
      code = 0xfffd // what Buffer.from writes for an unpaired surrogate
    }
    if (code < 0x800) {
      hash = Math.imul(hash ^ (0xc0 | (code >> 6)), FNV_PRIME)
    } else {
      if (code < 0x10000) hash = Math.imul(hash ^ (0xe0 | (code >> 12)), FNV_PRIME)
      else {
        hash = Math.imul(hash ^ (0xf0 | (code >> 18)), FNV_PRIME)
        hash = Math.imul(hash ^ (0x80 | ((code >> 12) & 0x3f)), FNV_PRIME)
      }
      hash = Math.imul(hash ^ (0x80 | ((code >> 6) & 0x3f)), FNV_PRIME)
    }
    hash = Math.imul(hash ^ (0x80 | (code & 0x3f)), FNV_PRIME)
  }
  return hash >>> 0
}

/** FNV-1a (32 bit) over raw bytes: the same number as fnv1aUtf8 for the string they encode. */
export function fnv1aBytes(bytes: Uint8Array): number {
  let hash = FNV_OFFSET
  for (const byte of bytes) hash = Math.imul(hash ^ byte, FNV_PRIME)
  return hash >>> 0
}
