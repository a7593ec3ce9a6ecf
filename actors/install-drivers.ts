// Registers every agent driver and backend this build has. Imported once by entry points.
export {};
