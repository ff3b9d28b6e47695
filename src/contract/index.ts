export * from "./common.ts";
export * from "./world.ts";
export * from "./execute.ts";
export * from "./capabilities.ts";
export * from "./span.ts";
export * from "./doctor.ts";
export * from "./hardening.ts";
export * from "./fsdiff.ts";
