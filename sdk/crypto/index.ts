/**
 * The SDK's end-to-end encryption core: X3DH (./x3dh), the Double Ratchet (./ratchet), the two joined into a
 * pairwise session (./session), and groups by sender keys (./senderKeys), all on @noble primitives (./primitives).
 * docs/CRYPTO.md describes the choices and the wire and state formats.
 */
export * from "./primitives";
export * from "./x3dh";
export * from "./ratchet";
export * from "./session";
export * from "./senderKeys";
