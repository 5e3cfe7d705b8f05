"""A Starlette app and pyserver sharing one message board, served either way:

    hypercorn -k trio examples.starlette_app:app      # pyserver as an ASGI app (ASGIApp)
    pyserver run examples.starlette_app:sio           # Starlette served by pyserver (App(asgi=))

(from the repository's root; add ``--bind 127.0.0.1:8000`` / ``--port 8000`` as you like.)

The board is plain Python state that both sides use: ``GET /api/messages`` lists it, ``POST
/api/messages`` (JSON ``{"text": ...}``) adds to it and emits ``message`` to every Socket.IO
client; the Socket.IO event ``post`` adds to it too and is acknowledged with the message's id;
a client that connects gets ``history``. ``GET /`` is a small page using the client bundle
that pyserver serves at ``/socket.io/socket.io.min.js``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from pyserver import App, ASGIApp, Server

MESSAGES: list[dict[str, Any]] = []
MAX_MESSAGES = 100


def add_message(text: str, by: str) -> dict[str, Any]:
    message = {"id": len(MESSAGES) + 1, "text": text[:500], "by": by}
    MESSAGES.append(message)
    del MESSAGES[:-MAX_MESSAGES]
    sio.emit("message", message)
    return message


# -- the Starlette side: REST routes ----------------------------------------------------------


async def list_messages(request: Request) -> JSONResponse:
    return JSONResponse(MESSAGES)


async def post_message(request: Request) -> JSONResponse:
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        return JSONResponse({"error": 'expected {"text": "..."}'}, status_code=400)
    return JSONResponse(add_message(body["text"], "rest"), status_code=201)


PAGE = """<!doctype html><meta charset="utf-8"><title>board</title>
<ul id="board"></ul><form><input id="text" autocomplete="off"><button>post</button></form>
<script src="/socket.io/socket.io.min.js"></script><script>
const socket = io(), board = document.getElementById("board");
const show = (m) => { const li = document.createElement("li");
  li.textContent = `${m.by}: ${m.text}`; board.append(li); };
socket.on("history", (list) => { board.replaceChildren(); list.forEach(show); });
socket.on("message", show);
document.querySelector("form").onsubmit = (e) => { e.preventDefault();
  const input = document.getElementById("text");
  socket.emit("post", input.value); input.value = ""; };
</script>"""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    MESSAGES.append({"id": 1, "text": "board opened", "by": "server"})
    yield


web = Starlette(
    routes=[
        Route("/", page),
        Route("/api/messages", list_messages),
        Route("/api/messages", post_message, methods=["POST"]),
    ],
    lifespan=lifespan,
)

# -- the pyserver side: Socket.IO events ------------------------------------------------------

#: ``pyserver run examples.starlette_app:sio``: pyserver's own server, Starlette behind it.
sio = Server(app=App(asgi=web))


@sio.on("connection")
async def connection(socket: Any) -> None:
    socket.emit("history", MESSAGES)


@sio.on("post")
async def post(socket: Any, text: Any) -> int:
    return int(add_message(str(text), socket.id)["id"])


#: ``hypercorn -k trio examples.starlette_app:app``: pyserver as an ASGI app, Starlette beside.
app = ASGIApp(sio, other_asgi_app=web)
