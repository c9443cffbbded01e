// A loopback HTTP server for the browser tests without CVAT: serves a built UI (dist) as CVAT's nginx does
// (index.html for any route, the headers of cvat-ui/react_nginx.conf) and hands /api/ to a handler.

import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';

const TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'application/javascript',
    '.mjs': 'application/javascript',
    '.css': 'text/css',
    '.json': 'application/json',
    '.wasm': 'application/wasm',
    '.png': 'image/png',
    '.ico': 'image/x-icon',
    '.svg': 'image/svg+xml',
    '.onnx': 'application/octet-stream',
};

const PAGE_HEADERS = {
    'Cache-Control': 'no-cache, no-store, must-revalidate',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'credentialless',
};
const ASSET_HEADERS = {
    'Cache-Control': 'public',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Service-Worker-Allowed': '/',
};

async function readBody(request) {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString('utf8');
    if (!text) return null;
    try {
        return JSON.parse(text);
    } catch {
        return text;
    }
}

// api(request, body, url) answers { status, body } (a body object is sent as JSON) or null for 404.
export async function startServer({ root, api = async () => null, host = '127.0.0.1' } = {}) {
    const server = createServer(async (request, response) => {
        const url = new URL(request.url, `http://${host}`);
        try {
            if (url.pathname.startsWith('/api/')) {
                const answer = await api(request, await readBody(request), url);
                const { status = 404, body = { detail: 'Not found.' }, headers = {} } = answer ?? {};
                const text = typeof body === 'string' ? body : JSON.stringify(body);
                response.writeHead(status, { 'Content-Type': 'application/json', ...headers });
                response.end(request.method === 'HEAD' ? undefined : text);
                return;
            }
            let file = normalize(join(root, decodeURIComponent(url.pathname)));
            if (!file.startsWith(normalize(root) + sep) && file !== normalize(root)) {
                response.writeHead(403).end();
                return;
            }
            const info = await stat(file).catch(() => null);
            if (!info || info.isDirectory()) file = join(root, 'index.html'); // any route: the app
            const headers = url.pathname.startsWith('/assets/') ? ASSET_HEADERS : PAGE_HEADERS;
            const data = await readFile(file);
            response.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', ...headers });
            response.end(data);
        } catch (error) {
            response.writeHead(500, { 'Content-Type': 'text/plain' }).end(String(error));
        }
    });
    await new Promise((resolve) => { server.listen(0, host, resolve); });
    const { port } = server.address();
    return {
        url: `http://${host}:${port}`,
        close: () => new Promise((resolve) => { server.close(resolve); server.closeAllConnections(); }),
    };
}
