/** POST /v1/execute (spec section 4) and its streaming variant. */
import { z } from "zod";
import { FsDiff, WorldSpecInput } from "./world.ts";
import { SpanId, WorldId } from "./common.ts";
import { EgressSummary } from "./net.ts";

export const Budget = z.strictObject({
  max_execs: z.number().int().nonnegative().optional(),
  max_runtime_ms: z.number().int().nonnegative().optional(),
  max_egress_bytes: z.number().int().nonnegative().optional(),
});
export type Budget = z.infer<typeof Budget>;

/** Absolute path, no NUL. */
const AbsPath = z
  .string()
  .startsWith("/", "must be an absolute path")
  .refine((s) => !s.includes("\0"), "must not contain NUL");

export const ExecuteRequest = z
  .strictObject({
    /** A shell string, run as `bash -c CMD` inside the world. */
    cmd: z.string().min(1, "cmd must not be empty").optional(),
    /** Or an argv, exec'd directly (no shell). Exactly one of cmd/argv. */
    argv: z.array(z.string()).min(1).optional(),
    cwd: AbsPath.optional(),
    env: z.record(z.string(), z.string()).optional(),
    pty: z.boolean().default(false),
    agent_id: z
      .string({ error: "agent_id is required for API calls" })
      .trim()
      .min(1, "agent_id is required for API calls"),
    profile: z.string().optional(),
    budget: Budget.optional(),
    /** Run in a fresh overlay world: writes never touch the project; fs_diff returned. */
    isolated: z.boolean().default(false),
    /** Extension: which world to use (project_dir defaults to cwd). */
    world: WorldSpecInput.optional(),
    /** Extension: stream NDJSON frames instead of one JSON body. */
    stream: z.boolean().default(false),
    /** Extension: bytes fed to the command's stdin, base64. */
    stdin_b64: z.string().optional(),
    /** ours (issue 14.2): leave what the command started in the background running when it ends (default: killed). */
    keep_background: z.boolean().default(false),
  })
  .refine((r) => (r.cmd === undefined) !== (r.argv === undefined), {
    message: "exactly one of cmd or argv is required",
    path: ["cmd"],
  });
export type ExecuteRequest = z.infer<typeof ExecuteRequest>;
export type ExecuteRequestInput = z.input<typeof ExecuteRequest>;

export const ExecuteResponse = z.strictObject({
  exit: z.number().int(),
  span_id: SpanId,
  stdout_b64: z.string(),
  stderr_b64: z.string(),
  scopes_used: z.array(z.string()),
  world_id: WorldId,
  fs_diff: FsDiff.optional(),
  /** ours (issue 15): the command's egress through the world's gateway; `blocked` feeds the CLI's end-of-command line */
  egress: EgressSummary.optional(),
});
export type ExecuteResponse = z.infer<typeof ExecuteResponse>;

/** `stream: true`: application/x-ndjson, output frames then one `result` frame. */
export const ExecuteStreamFrame = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("stdout"), data_b64: z.string() }),
  z.strictObject({ type: z.literal("stderr"), data_b64: z.string() }),
  z.strictObject({ type: z.literal("result"), result: ExecuteResponse }),
  z.strictObject({
    type: z.literal("error"),
    error: z.strictObject({ code: z.string(), message: z.string(), hint: z.string().optional() }),
  }),
]);
export type ExecuteStreamFrame = z.infer<typeof ExecuteStreamFrame>;
