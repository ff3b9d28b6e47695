/** Issue 18.4: back-pressure — the windows live in src/api/flow.ts (the host proxy uses them too). */
export { drainBelow, HIGH_WATER, LOW_WATER, SendWindow, type Pausable } from "../src/api/flow.ts";
