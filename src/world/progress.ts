/** Progress of a host-backend action (warm/stop/restart), for humans; one type for every backend. */
export interface Progress {
  step(msg: string): void;
  ok(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}
export const quietProgress: Progress = { step() {}, ok() {}, warn() {}, debug() {} };
