/**
 * The client: the wallet-bound identity and its encrypted storage (./identity), the DID on chain (./did), and the
 * portable contacts/history backup (./backup). docs/SDK.md describes the API, the key derivation and what is stored
 * where.
 */
export * from "./identity";
export * from "./did";
export * from "./backup";
export * from "./envelope";
export * from "./client";
export * from "./seen";
