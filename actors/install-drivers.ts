// Registers every agent driver and backend this build has. Imported once by entry points.
import './agents/hyperstart.js';
import './agents/kata.js';
import './backends/install.js';
export {};
