/**
 * Extended attributes through bun:ffi (`lgetxattr`), for the fs diff: overlayfs marks opaque
 * directories with `trusted.overlay.opaque` (or `user.overlay.opaque` under `userxattr`), and
 * fuse-overlayfs may use `user.fuseoverlayfs.*`. Spawning `getfattr` per directory would cost
 * a process per dir; one ffi call is ~1 µs.
 *
 * `l`-variant on purpose: never follow a symlink the world planted in the upper dir.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { errno } from "./libc.ts";

const { i64, u64, pointer: P } = FFIType;

function open() {
  return dlopen("libc.so.6", {
    lgetxattr: { args: [P, P, P, u64], returns: i64 },
  });
}
let lib: ReturnType<typeof open> | undefined;

const NUL = Buffer.from([0]);
const ENODATA = 61;
const ENOTSUP = 95;
const ERANGE = 34;

// One scratch buffer: the values we read are tiny ("y", "x"); longer ones are retried.
let scratch = Buffer.alloc(256);

/**
 * The value of xattr `name` on `path` (not following symlinks), or null when the attribute is
 * absent or the filesystem has no xattrs. Other errors (EACCES, ENOENT...) throw.
 */
export function lgetxattr(path: string | Buffer, name: string): Buffer | null {
  lib ??= open();
  // Buffer paths carry names that are not valid UTF-8, byte for byte.
  const p = typeof path === "string" ? Buffer.from(`${path}\0`) : Buffer.concat([path, NUL]);
  const n = Buffer.from(`${name}\0`);
  for (;;) {
    const rc = Number(lib.symbols.lgetxattr(ptr(p), ptr(n), ptr(scratch), BigInt(scratch.length)));
    if (rc >= 0) return Buffer.from(scratch.subarray(0, rc));
    const e = errno();
    if (e === ENODATA || e === ENOTSUP) return null;
    if (e === ERANGE && scratch.length < 1 << 20) {
      scratch = Buffer.alloc(scratch.length * 16);
      continue;
    }
    throw new Error(`lgetxattr ${path.toString()} ${name}: errno ${e}`);
  }
}

/** The attribute as a string (UTF-8), or null when absent. */
export function lgetxattrString(path: string | Buffer, name: string): string | null {
  const v = lgetxattr(path, name);
  return v === null ? null : v.toString("utf8");
}
