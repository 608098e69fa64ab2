"""A file server on 127.0.0.1 for the download tests (keras.utils.get_file against real HTTP)."""

import functools
import hashlib
import http.server
import os
import pathlib
import socket
import threading


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    timeout = 10  # bound every connection

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()


class LoopbackServer:
    """Serve `root` on 127.0.0.1 (random port) from a thread; use as a context manager."""

    def __init__(self, root):
        self.root = str(root)

    def __enter__(self):
        handler = functools.partial(_QuietHandler, directory=self.root)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.requests = []
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self._old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(10)  # urlretrieve (get_file) has no timeout of its own
        self._old_env = {k: os.environ.get(k) for k in ("no_proxy", "NO_PROXY")}
        os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
        socket.setdefaulttimeout(self._old_timeout)
        for k, v in self._old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    @property
    def requests(self):
        return self.httpd.requests

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
