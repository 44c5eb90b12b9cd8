/**
 * The edge node's libp2p host: TCP, Noise, Yamux and identify, with the node's Ed25519 identity key kept in a data
 * directory (created on first start, reused after, so the peer id survives restarts), and the layered-packet relay
 * (node/relay.ts) mounted on it.
 *
 * The node's X25519 relay key is not a second secret: it is the Montgomery form of the Ed25519 identity key
 * (`relayKeyPairFromNodeKey` in sdk/net/peerId.ts), so the peer id a node registers is all a sender needs to wrap a
 * layer for it (`relayPublicKeyOfPeer`). The `relay.key` file of the first version is no longer read or written.
 *
 * A devnet data directory (scripts/lib/devnet.ts) holds the node's key as `peer-key.json` (hex seed and peer id), the
 * key its registration names: when `node.key` is missing and that file is present, `node.key` is created from it, so
 * the daemon runs under the registered peer id.
 *
 * Transports: TCP (`/…/tcp/<port>`) for nodes and native clients, and WebSockets (`/…/tcp/<port>/ws`, @libp2p/websockets)
 * for browsers; both carry Noise and Yamux. Any other listen address is refused with a typed error instead of being
 * silently ignored. Browsers need `/tls/ws` (wss) from any origin but localhost: put a TLS-terminating proxy in front
 * and announce its address (`announce`).
 *
 * The libp2p stack is ESM-only (the @chainsafe packages export only `import`), while the repository is CommonJS
 * TypeScript: this is the one module that loads it, with `await import(...)`, after the Promise.withResolvers
 * polyfill that libp2p needs on Node 20 (docs/NODE.md).
 */
import "./polyfill";
import { ed25519 } from "@noble/curves/ed25519.js";
import { hexToBytes } from "@noble/hashes/utils.js";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Libp2p, PrivateKey } from "@libp2p/interface" with { "resolution-mode": "import" };
import { peerIdFromEd25519PublicKey, relayKeyPairFromNodeKey } from "../sdk/net/peerId";
import { useHalfWindowUpdates } from "../sdk/net/yamuxWindow";
import { EdgeRelay, type EdgeRelayInit } from "./relay";

/** File of the libp2p identity key (protobuf, as @libp2p/crypto writes it). */
export const NODE_KEY_FILE = "node.key";
/** The devnet's key file (scripts/lib/devnet.ts): imported into NODE_KEY_FILE when that is missing. */
export const DEVNET_KEY_FILE = "peer-key.json";
/** Owner read/write only: the key lets anyone impersonate the node and read its layer of every packet. */
const KEY_FILE_MODE = 0o600;
/** Loopback only unless the operator says otherwise: a fresh node should not appear on the network by accident. */
export const DEFAULT_LISTEN: readonly string[] = ["/ip4/127.0.0.1/tcp/0"];

/** Why a host could not start. */
export type EdgeHostErrorCode = "NODE_KEY_INVALID" | "LISTEN_UNSUPPORTED";

/** A key file that exists but cannot be used. */
export class NodeKeyError extends Error {
  readonly code: EdgeHostErrorCode = "NODE_KEY_INVALID";
  constructor(message: string) {
    super(message);
    this.name = "NodeKeyError";
  }
}

/** A listen address the host has no transport for. */
export class ListenAddressError extends Error {
  readonly code: EdgeHostErrorCode = "LISTEN_UNSUPPORTED";
  constructor(message: string) {
    super(message);
    this.name = "ListenAddressError";
  }
}

export interface EdgeHostOptions {
  /** Directory holding the node's key; created (mode 0700) if missing. */
  readonly dataDir: string;
  /** Multiaddrs to listen on (TCP); DEFAULT_LISTEN (127.0.0.1, a random port) if omitted. */
  readonly listen?: readonly string[];
  /** Multiaddrs to announce instead of the listen addresses (what the node registers on chain). */
  readonly announce?: readonly string[];
  /** The relay's next-hop lookup, exit callback and outcome hook; the relay key is derived from the node key. */
  readonly relay?: Omit<EdgeRelayInit, "relayPrivateKey">;
  /** New connections accepted from one IP address a second (INBOUND_CONNECTIONS_PER_IP if omitted). */
  readonly inboundConnectionsPerIp?: number;
}

/**
 * New connections an edge node accepts from one IP address a second: 50, where libp2p's default is 5. An edge node is
 * the server of many clients, and many of them share an address (a carrier's NAT, an office, every process of a
 * devnet on 127.0.0.1): at 5 a second, the sixth client of a burst was reset (ECONNRESET).
 */
export const INBOUND_CONNECTIONS_PER_IP = 50;

export interface EdgeHost {
  readonly libp2p: Libp2p;
  readonly relay: EdgeRelay;
  /** The X25519 relay public key: the Montgomery form of the peer id's Ed25519 key (`relayPublicKeyOfPeer`). */
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

/** The 32-byte Ed25519 seed of a devnet `peer-key.json`, or undefined when there is none. */
async function readDevnetSeed(dataDir: string): Promise<Uint8Array | undefined> {
  const file = path.join(dataDir, DEVNET_KEY_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const stored = JSON.parse(text) as { privateKey?: unknown; peerId?: unknown };
  if (typeof stored.privateKey !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(stored.privateKey)) {
    throw new NodeKeyError(`readDevnetSeed: expected a 32-byte hex privateKey in ${file}`);
  }
  const seed = hexToBytes(stored.privateKey.slice(2));
  if (stored.peerId !== undefined && stored.peerId !== peerIdFromEd25519PublicKey(ed25519.getPublicKey(seed))) {
    throw new NodeKeyError(`readDevnetSeed: the peerId in ${file} does not match its privateKey`);
  }
  return seed;
}

/** Loads the node's Ed25519 key from `dataDir` (creating it, or importing the devnet key, on first start). */
export async function loadNodeKey(dataDir: string): Promise<PrivateKey> {
  const { generateKeyPair, privateKeyFromProtobuf, privateKeyFromRaw, privateKeyToProtobuf } =
    await import("@libp2p/crypto/keys");
  const bytes = await loadOrCreate(path.join(dataDir, NODE_KEY_FILE), async () => {
    const seed = await readDevnetSeed(dataDir);
    if (seed === undefined) return privateKeyToProtobuf(await generateKeyPair("Ed25519"));
    const raw = new Uint8Array(64);
    raw.set(seed, 0);
    raw.set(ed25519.getPublicKey(seed), 32);
    return privateKeyToProtobuf(privateKeyFromRaw(raw));
  });
  let key: PrivateKey;
  try {
    key = privateKeyFromProtobuf(bytes);
  } catch (error) {
    throw new NodeKeyError(`loadNodeKey: ${NODE_KEY_FILE} does not parse: ${(error as Error).message}`);
  }
  if (key.type !== "Ed25519") throw new NodeKeyError(`loadNodeKey: expected an Ed25519 key, got ${key.type}`);
  return key;
}

/** The relay key pair of a libp2p Ed25519 private key (its raw form is seed || public key). */
export function relayKeyPairOf(key: PrivateKey): { privateKey: Uint8Array; publicKey: Uint8Array } {
  if (key.type !== "Ed25519" || key.raw.length !== 64) {
    throw new NodeKeyError(`relayKeyPairOf: expected a 64-byte raw Ed25519 key, got ${key.type} of ${key.raw.length}`);
  }
  return relayKeyPairFromNodeKey(key.raw.subarray(0, 32));
}

/** Starts an edge node host with its key from `dataDir` and the relay protocol handled. */
export async function createEdgeHost(options: EdgeHostOptions): Promise<EdgeHost> {
  const listen = [...(options.listen ?? DEFAULT_LISTEN)];
  for (const address of listen) {
    if (!/\/tcp\/\d+(\/ws)?$/.test(address)) {
      throw new ListenAddressError(
        `createEdgeHost: expected a TCP or WebSockets listen address (/ip4|ip6|dns/…/tcp/<port>[/ws]), got '${address}'`,
      );
    }
  }
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const privateKey = await loadNodeKey(options.dataDir);
  const relayKeys = relayKeyPairOf(privateKey);

  await useHalfWindowUpdates(); // fewer yamux frames a packet: sdk/net/yamuxWindow.ts
  const [{ createLibp2p }, { tcp }, { webSockets }, { noise }, { yamux }, { identify }] = await Promise.all([
    import("libp2p"),
    import("@libp2p/tcp"),
    import("@libp2p/websockets"),
    import("@chainsafe/libp2p-noise"),
    import("@chainsafe/libp2p-yamux"),
    import("@libp2p/identify"),
  ]);
  const libp2p = await createLibp2p({
    privateKey,
    addresses: {
      listen,
      ...(options.announce !== undefined && options.announce.length > 0 ? { announce: [...options.announce] } : {}),
    },
    transports: [tcp(), webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionManager: { inboundConnectionThreshold: options.inboundConnectionsPerIp ?? INBOUND_CONNECTIONS_PER_IP },
  });
  const relay = new EdgeRelay(libp2p, { ...options.relay, relayPrivateKey: relayKeys.privateKey });
  try {
    await relay.start();
  } catch (error) {
    await libp2p.stop();
    throw error;
  }
  return {
    libp2p,
    relay,
    relayPublicKey: relayKeys.publicKey,
    async stop() {
      await relay.stop();
      await libp2p.stop();
    },
  };
}
