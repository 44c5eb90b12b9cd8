/**
 * One refresh at a time, and never a stale one: `call()` starts `run` if none is in flight; a call that comes in
 * while one is running is answered by the next run, started when that one ends (one for every caller that came in
 * meanwhile), because the running one may have read the chain before the caller's change. Used by the chain
 * followers (node/discovery.ts, the identity tree in node/bills.ts), whose callers sync right after a transaction
 * and must see it.
 */
export class CoalescedRun {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(private readonly run: () => Promise<void>) {}

  /** Resolves once a run that started after this call has finished (or rejects with its error). */
  call(): Promise<void> {
    if (this.running === undefined) {
      this.running = this.run().finally(() => (this.running = undefined));
      return this.running;
    }
    this.next ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.call();
      });
    return this.next;
  }

  /** The run in flight, if any (to wait for it on stop). */
  get inFlight(): Promise<void> | undefined {
    return this.running;
  }
}
