/**
 * The edge node's libp2p host: TCP, Noise, Yamux and identify, with the node's Ed25519 identity key and its X25519
 * relay key kept in a data directory (created on first start, reused after, so the peer id survives restarts), and
 * the layered-packet relay (node/relay.ts) mounted on it.
 *
 * The libp2p stack is ESM-only (the @chainsafe packages export only `import`), while the repository is CommonJS
 * TypeScript: this is the one module that loads it, with `await import(...)`, after the Promise.withResolvers
 * polyfill that libp2p needs on Node 20 (docs/NODE.md).
 */
import "./polyfill";
import { x25519 } from "@noble/curves/ed25519.js";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Libp2p } from "@libp2p/interface" with { "resolution-mode": "import" };
import type { PrivateKey } from "@libp2p/interface" with { "resolution-mode": "import" };
import { EdgeRelay, type EdgeRelayInit } from "./relay";

/** File of the libp2p identity key (protobuf, as @libp2p/crypto writes it). */
export const NODE_KEY_FILE = "node.key";
/** File of the X25519 relay secret key (32 raw bytes). */
export const RELAY_KEY_FILE = "relay.key";
/** Owner read/write only: either key lets anyone impersonate the node or read its layer of every packet. */
const KEY_FILE_MODE = 0o600;
/** Loopback only unless the operator says otherwise: a fresh node should not appear on the network by accident. */
export const DEFAULT_LISTEN: readonly string[] = ["/ip4/127.0.0.1/tcp/0"];

/** A key file that exists but cannot be used. */
export class NodeKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NodeKeyError";
  }
}

export interface EdgeHostOptions {
  /** Directory holding the node's keys; created (mode 0700) if missing. */
  readonly dataDir: string;
  /** Multiaddrs to listen on; DEFAULT_LISTEN (127.0.0.1, a random port) if omitted. */
  readonly listen?: readonly string[];
  /** The relay's peer map and exit callback; the relay key comes from dataDir. */
  readonly relay?: Omit<EdgeRelayInit, "relayPrivateKey">;
}

export interface EdgeHost {
  readonly libp2p: Libp2p;
  readonly relay: EdgeRelay;
  /** The X25519 relay public key the node publishes with its stake (senders wrap layers to it). */
  readonly relayPublicKey: Uint8Array;
  /** Stops the relay, then the host (closes every connection and listener). */
  stop(): Promise<void>;
}

/** Reads a key file, or creates it with `create()` (mode 0600, never overwriting one that appeared meanwhile). */
async function loadOrCreate(file: string, create: () => Promise<Uint8Array> | Uint8Array): Promise<Uint8Array> {
  try {
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0) await chmod(file, KEY_FILE_MODE);
    return new Uint8Array(await readFile(file));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const bytes = await create();
  await writeFile(file, bytes, { mode: KEY_FILE_MODE, flag: "wx" });
  return bytes;
}

async function loadNodeKey(dataDir: string): Promise<PrivateKey> {
  const { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } = await import("@libp2p/crypto/keys");
  const bytes = await loadOrCreate(path.join(dataDir, NODE_KEY_FILE), async () =>
    privateKeyToProtobuf(await generateKeyPair("Ed25519")),
  );
  let key: PrivateKey;
  try {
    key = privateKeyFromProtobuf(bytes);
  } catch (error) {
    throw new NodeKeyError(`loadNodeKey: ${NODE_KEY_FILE} does not parse: ${(error as Error).message}`);
  }
  if (key.type !== "Ed25519") throw new NodeKeyError(`loadNodeKey: expected an Ed25519 key, got ${key.type}`);
  return key;
}

async function loadRelayKey(dataDir: string): Promise<Uint8Array> {
  const bytes = await loadOrCreate(path.join(dataDir, RELAY_KEY_FILE), () => Uint8Array.from(randomBytes(32)));
  if (bytes.length !== 32) {
    throw new NodeKeyError(`loadRelayKey: expected a 32-byte X25519 key in ${RELAY_KEY_FILE}, got ${bytes.length}`);
  }
  return bytes;
}

/** Starts an edge node host with its keys from `dataDir` and the relay protocol handled. */
export async function createEdgeHost(options: EdgeHostOptions): Promise<EdgeHost> {
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const privateKey = await loadNodeKey(options.dataDir);
  const relayPrivateKey = await loadRelayKey(options.dataDir);

  const [{ createLibp2p }, { tcp }, { noise }, { yamux }, { identify }] = await Promise.all([
    import("libp2p"),
    import("@libp2p/tcp"),
    import("@chainsafe/libp2p-noise"),
    import("@chainsafe/libp2p-yamux"),
    import("@libp2p/identify"),
  ]);
  const libp2p = await createLibp2p({
    privateKey,
    addresses: { listen: [...(options.listen ?? DEFAULT_LISTEN)] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
  });
  const relay = new EdgeRelay(libp2p, { ...options.relay, relayPrivateKey });
  try {
    await relay.start();
  } catch (error) {
    await libp2p.stop();
    throw error;
  }
  return {
    libp2p,
    relay,
    relayPublicKey: x25519.getPublicKey(relayPrivateKey),
    async stop() {
      await relay.stop();
      await libp2p.stop();
    },
  };
}
