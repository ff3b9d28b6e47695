/**
 * `nft -f` without a process: libnftables (shipped with the nftables package) through
 * bun:ffi, in the calling thread's network namespace (the helper's, after setns). One
 * `nft_run_cmd_from_buffer` is one netlink transaction, like `nft -f`. Returns null on
 * success, else the error text; throws only when the library cannot be loaded (the caller
 * then runs `nft -f -`).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

let lib: ReturnType<typeof open> | undefined;
function open() {
  const { u32, i32, pointer: P, cstring } = FFIType;
  return dlopen("libnftables.so.1", {
    nft_ctx_new: { args: [u32], returns: P },
    nft_ctx_free: { args: [P], returns: FFIType.void },
    nft_ctx_buffer_error: { args: [P], returns: i32 },
    nft_ctx_get_error_buffer: { args: [P], returns: cstring },
    nft_run_cmd_from_buffer: { args: [P, P], returns: i32 },
  }).symbols;
}

/** Load the library ahead of use (the warm helper does, off a world's creation path); false when absent. */
export function preloadNftables(): boolean {
  try {
    lib ??= open();
    return true;
  } catch {
    return false;
  }
}

export function nftApplyInProcess(script: string): string | null {
  lib ??= open();
  const ctx = lib.nft_ctx_new(0);
  if (!ctx) return "nft_ctx_new failed";
  try {
    lib.nft_ctx_buffer_error(ctx);
    const rc = lib.nft_run_cmd_from_buffer(ctx, ptr(Buffer.from(`${script}\0`)));
    return rc === 0 ? null : String(lib.nft_ctx_get_error_buffer(ctx)).trim() || `nft: error ${rc}`;
  } finally {
    lib.nft_ctx_free(ctx);
  }
}
