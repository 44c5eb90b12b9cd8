/** Storage adapters: the interface (./adapter), in memory (./memory), on the file system (./file). */
export * from "./adapter";
export * from "./memory";
export * from "./file";
