"""A tiny static file server: `serve.py ROOT`, listening on $PORT (default 8080)."""
import functools
import http.server
import os
import signal
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "static-site"
    sys_version = ""

    def end_headers(self):
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache" if self.path.endswith((".html", "/")) else "max-age=3600")
        super().end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    port = int(os.environ.get("PORT", "8080"))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), functools.partial(Handler, directory=root))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {root} on port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
