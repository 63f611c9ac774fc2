"""moto's S3 server for temper's tests: `moto_server`, with one change.

moto checks S3 conditional writes (If-None-Match: *) and then writes, in two steps, while
its threaded server runs requests at the same time: two racing conditional PUTs of one key
can both see "absent" and both succeed, which real S3 never allows. Here every request runs
its handler under one lock (request bodies are read before taking it, so a slow upload
blocks nobody), which makes check-and-write atomic as on S3.

Run with the venv's python (scripts/setup.sh installs moto[server] there):
    python moto-server.py --host 127.0.0.1 --port 5000 [--no-lock]
--no-lock serves like plain `moto_server` (to see the race for yourself).
"""

import argparse
import io
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple
from werkzeug.wsgi import get_input_stream


def serialized(app):
    lock = threading.Lock()

    def handle(environ, start_response):
        body = get_input_stream(environ).read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = True
        environ["CONTENT_LENGTH"] = str(len(body))
        with lock:
            result = app(environ, start_response)
            try:
                chunks = list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return chunks

    return handle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-lock", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        app if args.no_lock else serialized(app),
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
