/**
 * libp2p 3's dependencies call `Promise.withResolvers`, a Node 22 API; on Node 20 dials fail without it (ECONNRESET,
 * EncryptionFailedError). Imported for its side effect by sdk/net/host.ts, and by node/polyfill.ts for the daemons,
 * before the libp2p stack is loaded. Installs the function only when the runtime lacks it (harmless on Node 22).
 */
interface Resolvers<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}

const promiseConstructor = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> };

if (typeof promiseConstructor.withResolvers !== "function") {
  promiseConstructor.withResolvers = <T>(): Resolvers<T> => {
    let resolve!: (value: T | PromiseLike<T>) => void;
    let reject!: (reason?: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

export {};
