/** The value every scenario caches: a product row as an e-commerce catalogue would (~200 bytes of JSON). */
export interface Product {
  readonly id: number
  readonly sku: string
  readonly name: string
  readonly price: number
  readonly currency: string
  readonly inStock: boolean
  readonly tags: readonly string[]
  readonly updatedAt: string
}

export const PAYLOAD: Product = {
  id: 1_048_576,
  sku: 'SKU-1048576-BLU-750',
  name: 'Insulated steel water bottle, 750 ml, blue',
  price: 24.9,
  currency: 'EUR',
  inStock: true,
  tags: ['outdoor', 'kitchen', 'bestseller'],
  updatedAt: '2025-05-01T12:00:00.000Z',
}

export const PAYLOAD_JSON = JSON.stringify(PAYLOAD)

/** `count` distinct cache keys: item:0 … item:count-1. */
export function makeKeys(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `item:${i}`)
}
