/**
 * Where an agent is: a Unix socket path (the usual case) or, for the Lima backend's last-resort
 * transport (ssh-tcp), a loopback "127.0.0.1:PORT". One place turns either into a fetch target
 * and a WebSocket URL, so the CLI, the client and the proxy agree.
 */
const TCP = /^127\.0\.0\.1:\d{1,5}$/;

export const isTcpAddress = (addr: string): boolean => TCP.test(addr);

/** URL + fetch options for an HTTP request to `path` at `addr`. */
export function httpTarget(addr: string, path: string): { url: string; init: { unix?: string } } {
  return isTcpAddress(addr) ? { url: `http://${addr}${path}`, init: {} } : { url: `http://localhost${path}`, init: { unix: addr } };
}

/** WebSocket URL (npm `ws`) for `path` at `addr`. */
export const wsUrl = (addr: string, path: string): string => (isTcpAddress(addr) ? `ws://${addr}${path}` : `ws+unix://${addr}:${path}`);
