/**
 * The code of one peel worker thread (node/peelPool.ts starts it): it imports the relay secret key it is given once,
 * then peels batches of packets with OpenSSL's primitives, exactly as the relay's own thread does, and answers each
 * packet with its result or the OnionError it raised. It keeps no state between packets: the replay cache, the hop
 * records and the forwards stay on the relay's thread.
 */
import { parentPort, workerData } from "node:worker_threads";
import { x25519 } from "@noble/curves/ed25519.js";
import { OnionError, peel, type PeelOptions } from "../sdk/wire/onion";
import { NATIVE_ONION_SYMMETRIC, nativeX25519 } from "./onionNative";
import type { PeelOutcome, PeelReply, PeelRequest, PeelWorkerData } from "./peelPool";

const { relayPrivateKey } = workerData as PeelWorkerData;
const options: PeelOptions = {
  relayPublicKey: x25519.getPublicKey(relayPrivateKey),
  sharedSecret: nativeX25519(relayPrivateKey),
  symmetric: NATIVE_ONION_SYMMETRIC,
};

parentPort!.on("message", (request: PeelRequest) => {
  const results: PeelOutcome[] = [];
  for (const packet of request.packets) {
    try {
      const result = peel(packet, relayPrivateKey, options);
      if ("forward" in result) {
        results.push({ forward: result.forward, packet: result.packet });
      } else {
        results.push({ deliver: result.deliver, payload: result.payload });
      }
    } catch (error) {
      results.push(
        error instanceof OnionError
          ? { error: error.message, code: error.code }
          : { error: `peel worker: ${(error as Error).message}` },
      );
    }
  }
  // Copied back, not transferred: an array's buffer may be shared (Node's Buffer pool), and 4 KB copies are cheap.
  parentPort!.postMessage({ batch: request.batch, results } satisfies PeelReply);
});
parentPort!.postMessage({ ready: true });
