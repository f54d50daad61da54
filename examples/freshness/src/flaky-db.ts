/** A price service that can be made slow or failing, and counts its calls. */
export class FlakyPriceDb {
  calls = 0
  latencyMs = 5
  failing = false
  private price = 100

  setPrice(price: number): void {
    this.price = price
  }

  async fetchPrice(): Promise<number> {
    this.calls++
    await new Promise((resolve) => setTimeout(resolve, this.latencyMs))
    if (this.failing) throw new Error('database unavailable')
    return this.price
  }
}
