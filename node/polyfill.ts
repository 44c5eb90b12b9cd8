/**
 * Two Node 22 globals that libp2p 3 and its transports expect, supplied on Node 20. Imported for its side effect by
 * node/host.ts before the libp2p stack is loaded.
 * - `Promise.withResolvers`: without it dials fail (ECONNRESET, EncryptionFailedError).
 * - `WebSocket`: @libp2p/websockets dials with the global WHATWG WebSocket, which Node 20 lacks ("WebSocket is not
 *   defined"); the `ws` package's client implements the same interface (the transport already uses `ws` to listen).
 */
import { WebSocket as WsWebSocket } from "ws";
import "../sdk/net/polyfill"; // Promise.withResolvers, shared with the SDK's client host

const globals = globalThis as unknown as { WebSocket?: unknown };
if (globals.WebSocket === undefined) globals.WebSocket = WsWebSocket;

export {};
