// Pick a free TCP port on 127.0.0.1: listen on port 0, read the port, close.
// (There is a small window in which another process could take the port; that
// is acceptable for a test harness that starts its servers right away.)
import net from 'node:net';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
