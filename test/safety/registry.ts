// Named extension points (backends under test, fault kinds): one place each is registered and found.

export class Registry<T extends { readonly name: string }> {
  readonly #items = new Map<string, T>();
  readonly #what: string;

  constructor(what: string) {
    this.#what = what;
  }

  add(item: T): void {
    this.#items.set(item.name, item);
  }

  get(name: string): T {
    const item = this.#items.get(name);
    if (!item) throw new Error(`unknown ${this.#what} "${name}"; known: ${this.names().join(', ')}`);
    return item;
  }

  names(): string[] {
    return [...this.#items.keys()];
  }
}
