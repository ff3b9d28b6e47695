export * from "./common.ts";
export * from "./world.ts";
export * from "./execute.ts";
export * from "./capabilities.ts";
export * from "./doctor.ts";
