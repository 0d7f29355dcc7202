// redlock 4 ships no types; just what the benchmark calls.
declare module 'redlock' {
  interface Lock {
    unlock(): Promise<void>;
  }
  class Redlock {
    constructor(clients: unknown[], options?: { driftFactor?: number; retryCount?: number; retryDelay?: number; retryJitter?: number });
    lock(resource: string, ttl: number): Promise<Lock>;
    on(event: 'clientError', listener: (error: unknown) => void): this;
  }
  export default Redlock;
}
