/**
 * Yamux receive-window updates sent once half a window is used, instead of after every data frame.
 *
 * @chainsafe/libp2p-yamux 8 answers every DATA frame it receives with a WINDOW_UPDATE frame returning the bytes just
 * read. On a relay that carries one 4 KiB packet a frame, that doubles the frames on every connection: each update is
 * one more Noise encryption and socket write for the receiver and one more decryption for the sender, about a third of
 * an edge node's CPU a packet (docs/NODE.md, "Figures"). The yamux specification leaves the timing of updates to the
 * receiver; Go's yamux (the reference implementation) waits until at least half the window is used. This module gives
 * libp2p-js's yamux that policy, by replacing `YamuxStream.prototype.sendWindowUpdate` with a wrapper that returns
 * early while more than half the receive window is still free on an established stream, and calls the library's own
 * method otherwise (so the SYN/ACK flags, the pause state and the window auto-tuning stay the library's).
 *
 * Why it is safe: a sender stops only when its send window reaches zero, i.e. when this side's free receive window is
 * zero; the update is sent as soon as the free window falls to half, so a sender that keeps writing always gets
 * another half window before it runs out. A paused stream (its reader not keeping up) sends no update either way.
 *
 * The replacement is installed once per process by `useHalfWindowUpdates()`, which every host factory (the SDK's and
 * the edge node's) awaits before it builds a libp2p node. It checks the fields it relies on and leaves the library
 * alone if they are not there (a yamux version whose stream looks different), so an upgrade can only lose the
 * optimisation, never break a stream: `halfWindowUpdatesActive()` says whether it is in place, and a test holds that.
 */

/** The yamux stream fields the policy reads (private in the library's types, plain properties at run time). */
interface YamuxStreamInternals {
  state: number;
  recvWindow: number;
  recvWindowCapacity: number;
  sendWindowUpdate(): void;
}

/** The stream state yamux gives a stream once its SYN/ACK exchange is done (the library's `StreamState.Established`). */
const ESTABLISHED = 3;

let installed: Promise<boolean> | undefined;

/**
 * Installs the half-window update policy in this process's yamux (once; later calls return the first result). Resolves
 * to whether it is in place: false when the installed yamux does not look like the version this was written for.
 */
export function useHalfWindowUpdates(): Promise<boolean> {
  installed ??= install();
  return installed;
}

/** Whether the half-window update policy is in place in this process (after `useHalfWindowUpdates` resolved). */
export async function halfWindowUpdatesActive(): Promise<boolean> {
  return installed === undefined ? false : installed;
}

async function install(): Promise<boolean> {
  const { YamuxStream, StreamState } = await import("@chainsafe/libp2p-yamux/stream");
  const prototype = YamuxStream.prototype as unknown as YamuxStreamInternals;
  const original = prototype.sendWindowUpdate;
  if (typeof original !== "function" || StreamState.Established !== ESTABLISHED) return false;
  prototype.sendWindowUpdate = function sendWindowUpdateAtHalf(this: YamuxStreamInternals): void {
    if (
      this.state === ESTABLISHED &&
      typeof this.recvWindowCapacity === "number" &&
      typeof this.recvWindow === "number" &&
      this.recvWindowCapacity * 2 > this.recvWindow
    ) {
      return; // more than half the window is still free: the sender is far from blocked
    }
    original.call(this);
  };
  return true;
}
