"""A REST API v2-like upstream for the interop suite (tests/interop.rs): scim2-server behind TLS.

scim2-server's own WSGI application (with the bearer-token check of its `scim2-server` command) is
mounted at PREFIX (default /api/v2/scim, as on a Netskope tenant) and served over HTTPS with the
certificate and key given, on loopback. It listens on --port (0: a free port chosen by the OS) and
prints `LISTENING <host>:<port>` once it accepts connections. It exits when its standard input
closes, so it never outlives the test that started it.

Run with the interop venv's Python (.venv/bin/python, made by tests/run.sh).
"""

import argparse
import logging
import os
import ssl
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import make_server
from wsgiref.util import application_uri

from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME
from scim2_server.testserver.application import BearerTokenApplication
from scim2_server.testserver.cli import ThreadingWSGIServer
from scim2_server.utils import load_default_resource_types
from scim2_server.utils import load_default_schemas
from scim2_server.utils import load_default_service_provider_config


class MountedApplication(BearerTokenApplication):
    """scim2-server's application with its SCIM base exactly at the mount point.

    scim2-server builds its URLs as `<mount point>/v2/...`; REST API v2 serves them at
    `/api/v2/scim/...`, so `/v2` is not added (requests may still use it: it stays optional).
    """

    @staticmethod
    def get_base_url(environ):
        return application_uri(environ).rstrip("/")


def mount(prefix, app):
    """Serves `app` under `prefix` (a WSGI SCRIPT_NAME), 404 elsewhere."""

    def mounted(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path != prefix and not path.startswith(prefix + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not under " + prefix.encode() + b"\n"]
        # wsgiref knows nothing of the TLS around it; the URLs it builds are https ones.
        environ["wsgi.url_scheme"] = "https"
        environ["HTTPS"] = "on"
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        environ["PATH_INFO"] = path[len(prefix) :]
        return app(environ, start_response)

    return mounted


class TLSServer(ThreadingWSGIServer):
    """The threaded WSGI server of `scim2-server`, with TLS done in each connection's thread."""

    tls: ssl.SSLContext

    def finish_request(self, request, client_address):
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            logging.getLogger("upstream").warning("TLS handshake from %s: %s", client_address, e)
            return
        super().finish_request(request, client_address)


class QuietHandler(WSGIRequestHandler):
    """One line per request on stderr, as `scim2-server` logs them."""

    def log_message(self, format, *args):
        sys.stderr.write("upstream: %s\n" % (format % args))


def exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", required=True, help="PEM certificate chain, leaf first")
    parser.add_argument("--key", required=True, help="PEM private key")
    parser.add_argument(
        "--bearer-token",
        action="append",
        required=True,
        help="the REST API v2 token to demand (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prefix", default="/api/v2/scim")
    args = parser.parse_args()
    prefix = "/" + args.prefix.strip("/")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    # As `scim2-server --bearer-token`: the default RFC 7643 schemas, resource types and
    # service provider config, which then announces the bearer token scheme.
    config = load_default_service_provider_config()
    config.authentication_schemes = [
        *(config.authentication_schemes or []),
        BEARER_TOKEN_SCHEME,
    ]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=config,
    )
    service = ScimService(provider, secret=os.urandom(32).hex())
    app = MountedApplication(
        InMemoryStorage(), provider, service=service, bearer_tokens=args.bearer_token
    )

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(args.cert, args.key)
    tls.set_alpn_protocols(["http/1.1"])

    server = make_server(
        args.host,
        args.port,
        mount(prefix, app),
        server_class=TLSServer,
        handler_class=QuietHandler,
    )
    server.tls = tls
    host, port = server.server_address[:2]
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(f"LISTENING {host}:{port}", flush=True)
    print(f"upstream: serving https://{host}:{port}{prefix}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
