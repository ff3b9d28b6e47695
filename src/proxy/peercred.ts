/** Moved to src/sys/peercred.ts (the agent uses it too, issue 13). */
export * from "../sys/peercred.ts";
