"""The HTTP server: OpenAI-compatible embeddings, search and ask over a collection, a small web page.

Needs the ``server`` extra (``pip install 'gemvec[server]'``). Start it with ``gemvec serve``
or build the app yourself with :func:`create_app` and run it with any ASGI server.
"""

from gemvec.errors import require

require("fastapi", "server", "The HTTP server")
require("uvicorn", "server", "The HTTP server")

from gemvec.server.app import create_app  # noqa: E402
from gemvec.server.run import serve  # noqa: E402
from gemvec.server.settings import ServerSettings  # noqa: E402

__all__ = ["ServerSettings", "create_app", "serve"]
