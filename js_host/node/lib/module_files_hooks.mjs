// Module hooks (module.register, run by Node on its hooks thread) that tell
// module_files.js the file: URL of every module Node loads through its
// ES-module loader (ES modules, and CommonJS modules they import). They only
// report: what is loaded, and how, is Node's default.

let port = null;

export function initialize(data) {
  port = data.port;
  // A flush request: answered after every URL posted before it (one port keeps its order).
  port.on('message', (id) => port.postMessage({ flushed: id }));
  port.unref();
}

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (port !== null && url.startsWith('file:')) port.postMessage(url);
  return result;
}
