'use strict';

// A server that serves only requests authenticated with the user's secret by
// the challenge-response of security.js (the manager is one). A request
// without a valid MAC gets 401, with a challenge (a fresh server nonce and the
// proof that this server knows the secret) when the client sent a nonce of its
// own; an authenticated request's body is checked against its MAC before it is
// parsed, then handed to `dispatch(req, res, data)`; every answer to one
// carries its MAC and the nonce for the client's next request.

const {
  AUTH_SCHEME,
  CHALLENGE_HEADER,
  NONCE_PATTERN,
  NonceStore,
  managerProof,
  parseAuthParams,
  requestMac,
  responseMac,
  safeEqualHex,
} = require('./security');
const { BodyReader } = require('./body_reader');
const { BaseServer, rawHeader } = require('./server');

// The server nonce of an authenticated request: its answer carries a MAC.
const kNonce = Symbol('js-host.authenticated.nonce');

class AuthenticatedServer extends BaseServer {
  /**
   * @param {object} config
   * @param {object} [options]
   * @param {{secret: string, file: string}} [options.secret] the key of the
   *   challenge-response; without it every request is refused
   */
  constructor(config, options = {}) {
    super(config, options);
    this.secretFile = options.secret ? options.secret.file : null;
    this.secret = options.secret ? options.secret.secret : null;
    this.nonces = new NonceStore();
  }

  /** Only requests that carry a valid MAC are served. */
  route(req, res) {
    const auth = parseAuthParams(rawHeader(req, 'authorization'));
    const given = auth !== null && auth.scheme.toLowerCase() === AUTH_SCHEME.toLowerCase() ? auth.params : null;
    if (this.secret === null || given === null || !given.nonce || !given.mac) {
      this.refuse(req, res, false);
      return;
    }
    if (!this.nonces.consume(given.nonce)) {
      // Unknown, expired or already used (a replay): the client starts over.
      this.refuse(req, res, true);
      return;
    }
    this.readJson(req, new AuthenticatedRequest(this, req, res, given.nonce, given.mac));
  }

  /** An authenticated request, its body read and parsed: for the subclass. */
  dispatch(req, res) {
    this.notFound(req, res);
  }

  /**
   * 401, with a challenge when the client sent a nonce of its own: a fresh
   * server nonce and the proof that this server knows the secret.
   */
  refuse(req, res, stale) {
    const params = [`realm="js-host manager"`];
    const clientNonce = rawHeader(req, CHALLENGE_HEADER);
    if (this.secret !== null && clientNonce !== undefined && NONCE_PATTERN.test(clientNonce)) {
      const nonce = this.nonces.issue();
      params.push(`nonce="${nonce}"`, `proof="${managerProof(this.secret, clientNonce, nonce)}"`);
      if (stale) params.push('stale=true');
    }
    res.setHeader('WWW-Authenticate', `${AUTH_SCHEME} ${params.join(', ')}`);
    this.send(
      req,
      res,
      401,
      `Unauthorized: the js-host manager only serves requests authenticated with the secret in ${this.secretFile} ` +
        `(challenge-response "${AUTH_SCHEME}": send ${CHALLENGE_HEADER}, check the proof, then sign the request; ` +
        'the Python client js_host does this)',
    );
  }

  /**
   * Every answer to an authenticated request carries its MAC and a nonce for
   * the client's next request (RFC 7615 Authentication-Info).
   */
  send(req, res, status, body, type, cacheControl) {
    const nonce = req[kNonce];
    if (nonce !== undefined && !res.headersSent) {
      const next = this.nonces.issue();
      const mac = responseMac(this.secret, nonce, status, body, next);
      res.setHeader('Authentication-Info', `nextnonce="${next}", mac="${mac}"`);
    }
    super.send(req, res, status, body, type, cacheControl);
  }
}

/** A request with `Authorization: JSHost-HMAC`: its MAC is checked over the body's bytes. */
class AuthenticatedRequest extends BodyReader {
  constructor(server, req, res, nonce, mac) {
    super(server, req, res);
    this.nonce = nonce;
    this.mac = mac;
  }

  acceptBody(body) {
    const { server, req, res } = this;
    if (!safeEqualHex(this.mac, requestMac(server.secret, this.nonce, req.method, req.url, body))) {
      server.refuse(req, res, false);
      return false;
    }
    req[kNonce] = this.nonce;
    return true;
  }

  onBody(data) {
    this.server.dispatch(this.req, this.res, data);
  }
}

module.exports = { AuthenticatedServer };
