// The guest's listening sockets as files: a path is taken only when it is free or holds a
// dead socket, and at exit only the very socket this guest bound is removed (same device
// and inode), so no path given to a guest can make it delete anything else.
import { lstatSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';

/** Whether a unix socket file has a listener (a live guest owns it). */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Makes `path` free for listening: nothing there, or a socket nobody listens on (left by an
 * earlier guest that was killed), which is removed. Anything else is refused untouched.
 */
export async function claimSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket: refusing to replace it`);
  if (await listening(path)) throw new Error(`${path} is the socket of a running agent`);
  const again = lstatSync(path);
  if (again.isSocket() && again.ino === st.ino && again.dev === st.dev) unlinkSync(path);
}

export interface OwnSocket {
  /** Unlinks the socket if it is still the one bound; false when something else is there now. */
  remove(): boolean;
}

/** Records the socket just bound at `path`, to remove exactly it later. */
export function ownSocket(path: string): OwnSocket {
  const st = lstatSync(path);
  return {
    remove() {
      try {
        const now = lstatSync(path);
        if (!now.isSocket() || now.ino !== st.ino || now.dev !== st.dev) return false;
        unlinkSync(path);
        return true;
      } catch {
        return false;
      }
    },
  };
}
