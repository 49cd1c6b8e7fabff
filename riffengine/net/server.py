"""The OSCQuery and web server, in the engine's asyncio loop (aiohttp).

Why aiohttp: it runs inside the loop the engine already has (no second thread, no server
process), and does HTTP and WebSocket in one maintained library, so the namespace, the value
pushes and the web page share one port, one allow list and one token.

Routes (all GET)::

    /                      the OSCQuery namespace (JSON); a browser asking for HTML goes to /ui/
    /riff/alpha            one node; /riff/alpha?VALUE one attribute; ?HOST_INFO anywhere
    /ui/, /ui/<file>       the web surface: only the files shipped in riffengine/net/static/
    /loops/<clip>.png      the spectrogram image of a recent loop (by clip id, from memory)
    /seeds/                the seed images a picker offers (JSON): built-in, and paths.seeds
    /seeds/builtin/<name>.png, /seeds/folder/<file>.png   one of them

WebSocket (an upgrade on any namespace path, usually ``/``), as the proposal says:

- text ``{"COMMAND": "LISTEN" | "IGNORE", "DATA": "/riff/alpha"}``: every change of that
  method's value is pushed as a binary OSC message (the node's own type tags);
- binary OSC messages from the client set values, with the same checks and meaning as OSC over
  UDP (:meth:`~riffengine.control.osc.OscServer.apply_message`); a refusal comes back as the
  binary OSC message ``/riff/fail address reason`` and changes nothing;
- the web page's extension: text ``{"COMMAND": "RIFF_ENGINE", "DATA": true}`` subscribes to
  ``RIFF_STATUS`` (engine figures with the heard frame, :data:`STATUS_SECONDS` apart),
  ``RIFF_LOOP`` (a loop started being heard) and ``RIFF_NEXT`` (the next loop is ready).

Security. Peers outside ``http.allow`` get 403. Listening beyond loopback, a state change (a
binary OSC message) needs the token (``?token=`` in the WebSocket URL, or ``Authorization:
Bearer``); without it a client is read-only. Requests per peer, WebSocket messages per client,
message sizes, clients at once and each client's outgoing queue are bounded; a client that
cannot keep up is closed (it reconnects and resyncs). No file is served from a path a client
wrote: static files are read once at start, loop images are kept in memory, and a seed file
name goes through the same confinement as ``/riff/seed_image`` over OSC.

Thread rule: everything runs on the loop's thread; PNG encoding runs in the loop's executor.
Nothing here touches audio: a slow or hostile client costs the loop a bounded amount of work.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from pythonosc.osc_message import OscMessage

from riffengine.config import HttpSettings
from riffengine.control.confine import BUILTIN_SEEDS, builtin_seed_names, confine
from riffengine.control.osc import FAIL, OscServer, _RateLimit, allowed_by, build, networks
from riffengine.errors import UserError
from riffengine.events import Event, EventBus
from riffengine.net import oscquery
from riffengine.state import State
from riffengine.store import StateStore, changed_keys

if TYPE_CHECKING:
    from riffengine.net.discovery import Advertiser

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
"""The web surface's files, shipped as package data."""
MAX_BODY = 64 * 1024
"""Bytes in a request body (nothing here takes one)."""
MAX_WS_MESSAGE = 64 * 1024
"""Bytes in one WebSocket message."""
WS_RATE = (200.0, 400)
"""WebSocket messages a client may send: per second, and in a burst; the rest are refused."""
HTTP_RATE = (100.0, 200)
"""HTTP requests per peer address: per second, and in a burst; the rest get 429."""
MAX_PEERS = 256
"""Peer addresses whose request rate is tracked (the oldest is forgotten first)."""
OUT_QUEUE = 512
"""Messages waiting to go to one client; a client this far behind is closed."""
STATUS_SECONDS = 0.1
"""How often engine figures (the heard frame) go to the web page."""
LOOP_IMAGES = 32
"""Recent loop images kept for /loops/<clip>.png."""
CLIP_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
SEED_FILE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\- ]{0,126}\.png")
"""A seed image's file name: no folder, no leading dot."""
MAX_SEEDS = 200
"""Seed folder files a picker lists."""
PRIVATE_FIGURES = ("http_token",)
"""Figures never shown to web clients."""

Figures = Callable[[], Mapping[str, object]]


def is_loopback(host: str) -> bool:
    """True for 127.x, ::1 and localhost: nobody else can reach the server."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


@dataclass(eq=False)
class Client:
    """One WebSocket client: what it listens to, what it may do, what waits to go to it."""

    ws: web.WebSocketResponse
    peer: str
    can_write: bool
    listening: set[str] = field(default_factory=set)
    engine: bool = False
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(OUT_QUEUE))
    limit: _RateLimit = field(default_factory=lambda: _RateLimit(*WS_RATE))
    closing: bool = False

    def send(self, data: bytes | str) -> None:
        """Queue a message; a client too far behind is closed (it will reconnect)."""
        if self.closing:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.closing = True
            log.warning("web client %s is too slow; closing it", self.peer)
            asyncio.ensure_future(self.ws.close(code=1008, message=b"too slow"))


class LoopImages:
    """Recent loop images by clip id, PNG-encoded on first request and kept (bounded)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: OrderedDict[str, Any] = OrderedDict()  # clip id -> PIL image or PNG bytes

    def add(self, clip_id: str, image: object) -> None:
        if image is None or not CLIP_ID.fullmatch(clip_id) or clip_id in self._items:
            return
        self._items[clip_id] = image
        while len(self._items) > LOOP_IMAGES:
            self._items.popitem(last=False)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._items

    async def png(self, clip_id: str) -> bytes | None:
        item = self._items.get(clip_id)
        if item is None or isinstance(item, bytes):
            return item
        data = await self.loop.run_in_executor(None, _encode_png, item)
        if clip_id in self._items:
            self._items[clip_id] = data
        return data


def _encode_png(image: Any) -> bytes:
    """A PIL image as PNG bytes, its EXIF (the spectrogram parameters) kept; executor thread."""
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    buf = io.BytesIO()
    exif = image.info.get("exif")
    image.save(buf, format="PNG", **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _load_static() -> dict[str, tuple[bytes, str]]:
    """Every shipped static file by name, with its content type; read once."""
    types = {
        ".html": "text/html",
        ".js": "text/javascript",
        ".css": "text/css",
        ".png": "image/png",
        ".svg": "image/svg+xml",
        ".json": "application/json",
    }
    files = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file() and path.suffix in types:
            files[path.name] = (path.read_bytes(), types[path.suffix])
    return files


class WebServer:
    """The OSCQuery + web server; :meth:`start`, then :meth:`close` (both on the loop).

    ``osc`` applies control messages (it need not be listening); ``figures`` gives the engine
    figures for the page's status strip and playhead.
    """

    def __init__(
        self,
        settings: HttpSettings,
        osc: OscServer,
        store: StateStore,
        bus: EventBus,
        figures: Figures,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = settings
        self.osc = osc
        self.store = store
        self.bus = bus
        self.figures = figures
        self.loop = loop
        self.token = settings.token or secrets.token_urlsafe(18)
        self.needs_token = not is_loopback(settings.host)
        self.clients: set[Client] = set()
        self.images = LoopImages(loop)
        self.refused = 0
        self._networks = networks(settings.allow)
        self._peers: OrderedDict[str, _RateLimit] = OrderedDict()
        self._static = _load_static()
        self._listenable = oscquery.listenable(oscquery.namespace(store.state))
        self._last: dict[str, str] = {}  # RIFF_LOOP / RIFF_NEXT last sent, for new clients
        self._runner: web.AppRunner | None = None
        self._status_task: asyncio.Task | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self.advertiser: Advertiser | None = None
        """The zeroconf :class:`~riffengine.net.discovery.Advertiser`, beyond loopback only."""
        self.port = 0

    # -- lifecycle --

    async def start(self) -> WebServer:
        """Listen; UserError if the address is taken or invalid."""
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/ui", self._ui_slash)
        app.router.add_get("/ui/", self._ui)
        app.router.add_get("/ui/{name}", self._ui)
        app.router.add_get("/loops/{name}", self._loop_png)
        app.router.add_get("/seeds/", self._seed_list)
        app.router.add_get("/seeds/{kind}/{name}", self._seed_png)
        app.router.add_get("/{path:.*}", self._oscquery)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise UserError(
                f"HTTP: cannot listen on {self.settings.host}:{self.settings.port} "
                f"({exc.strerror or exc}); change http.host or http.port "
                f"(--http-port)"
            ) from None
        self.port = int(self._runner.addresses[0][1])
        self._unsubscribe = [self.store.subscribe(self._on_state), self.bus.subscribe(self._on_event)]
        self.osc.loop_url = self.loop_url
        self._status_task = self.loop.create_task(self._push_status())
        if self.settings.zeroconf and self.needs_token:  # beyond loopback: announce
            from riffengine.net.discovery import Advertiser

            try:
                osc_host, osc_port = self.osc.address
            except AssertionError:  # OSC over UDP is off
                osc_host, osc_port = "127.0.0.1", 0
            self.advertiser = Advertiser(self.settings.host, self.port, None if is_loopback(osc_host) else osc_port)
            self.advertiser.start()
        where = f"http://{self.public_host()}:{self.port}/ui/"
        if self.needs_token:
            log.warning("web surface at %s?token=%s (state changes need the token: http.token)", where, self.token)
        else:
            log.info("web surface at %s; OSCQuery at http://%s:%d/", where, self.public_host(), self.port)
        return self

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self.osc.loop_url == self.loop_url:
            self.osc.loop_url = None
        if self._status_task is not None:
            self._status_task.cancel()
            self._status_task = None
        if self.advertiser is not None:
            await self.advertiser.close()
            self.advertiser = None
        for client in list(self.clients):
            client.closing = True
            await client.ws.close(code=1001, message=b"server going away")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def public_host(self) -> str:
        """The host name clients use: the listening address, or this machine's mDNS name."""
        host = self.settings.host
        if _is_wildcard(host):
            return f"{socket.gethostname()}.local"
        return f"[{host}]" if ":" in host else host

    def loop_url(self, clip_id: str) -> str:
        """The URL of a loop's spectrogram image."""
        return f"http://{self.public_host()}:{self.port}/loops/{clip_id}.png"

    def figures_for_status(self) -> dict[str, object]:
        """The server's own figures for the OSC status reply (the token only goes there)."""
        return {
            "http_port": self.port,
            "http_clients": len(self.clients),
            "http_refused": self.refused,
            **({"http_token": self.token} if self.needs_token else {}),
        }

    # -- HTTP --

    def _allowed(self, host: str | None) -> bool:
        return allowed_by(self._networks, host or "")

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        """Allow list, per-peer rate, and clear answers for whatever goes wrong."""
        peer = request.remote or ""
        if not self._allowed(peer):
            self.refused += 1
            return _error(403, f"{peer} is not in http.allow; add its network to http.allow")
        limit = self._peers.pop(peer, None) or _RateLimit(*HTTP_RATE)
        self._peers[peer] = limit
        while len(self._peers) > MAX_PEERS:
            self._peers.popitem(last=False)
        if not limit.allow():
            self.refused += 1
            return _error(429, f"more than {HTTP_RATE[0]:g} requests a second; slow down")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400 and not exc.text:
                return _error(exc.status, exc.reason)
            raise
        except UserError as exc:
            return _error(400, str(exc))

    async def _oscquery(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        attribute = request.query_string or None
        if attribute == "HTML" or (
            attribute is None and path == "/" and "text/html" in request.headers.get("Accept", "")
        ):
            raise web.HTTPSeeOther("/ui/")
        if attribute == "HOST_INFO":
            return web.json_response(self.host_info(request))  # the object alone, as the proposal says
        tree = oscquery.namespace(self.store.state)
        try:
            answer = oscquery.query(tree, path.rstrip("/") or "/", attribute)
        except oscquery.QueryError as exc:
            if exc.status == 204:
                return web.Response(status=204)
            return _error(exc.status, str(exc))
        return web.json_response(answer)

    def host_info(self, request: web.Request) -> dict:
        """HOST_INFO; a wildcard listening address is answered with the one the client reached."""
        here = request.transport.get_extra_info("sockname")[0] if request.transport else "127.0.0.1"
        ws_ip = here if _is_wildcard(self.settings.host) else self.settings.host
        try:
            osc_ip, osc_port = self.osc.address
        except AssertionError:  # OSC over UDP is off: values go over the WebSocket only
            osc_ip, osc_port = ws_ip, 0
        if _is_wildcard(osc_ip):
            osc_ip = here
        info = oscquery.host_info(osc_ip, osc_port, ws_ip, self.port)
        if not osc_port:
            for key in ("OSC_IP", "OSC_PORT", "OSC_TRANSPORT"):
                info.pop(key)
        return info

    async def _ui_slash(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/" + (f"?{request.query_string}" if request.query_string else ""))

    async def _ui(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        item = self._static.get(name)
        if item is None:
            return _error(404, f"no file {name!r} in the web surface; open /ui/")
        data, kind = item
        return web.Response(body=data, content_type=kind, headers={"Cache-Control": "no-cache"})

    async def _loop_png(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        clip_id = name.removesuffix(".png")
        if not name.endswith(".png") or not CLIP_ID.fullmatch(clip_id):
            return _error(400, f"{name!r} is not a loop image name; use /loops/<clip id>.png")
        data = await self.images.png(clip_id)
        if data is None:
            return _error(404, f"no recent loop {clip_id!r}; the last {LOOP_IMAGES} loops are kept")
        return web.Response(body=data, content_type="image/png", headers={"Cache-Control": "max-age=3600"})

    def _seed_folder_names(self) -> list[str]:
        """PNG files directly in ``paths.seeds`` (at most :data:`MAX_SEEDS`), sorted."""
        try:
            names = sorted(
                e.name
                for e in os.scandir(self.osc.paths.seeds)
                if e.name.endswith(".png") and SEED_FILE.fullmatch(e.name)
            )
        except OSError:
            return []
        return names[:MAX_SEEDS]

    async def _seed_list(self, request: web.Request) -> web.StreamResponse:
        """The seed images a picker offers: built-in names and files in the seed folder."""
        folder = await self.loop.run_in_executor(None, self._seed_folder_names)
        return web.json_response(
            {
                "builtin": [{"value": n, "url": f"/seeds/builtin/{n}.png"} for n in builtin_seed_names()],
                "folder": [{"value": n, "url": f"/seeds/folder/{n}"} for n in folder],
            }
        )

    async def _seed_png(self, request: web.Request) -> web.StreamResponse:
        kind, name = request.match_info["kind"], request.match_info["name"]
        if kind not in ("builtin", "folder") or not SEED_FILE.fullmatch(name):
            return _error(
                400,
                f"{kind}/{name!r} is not a seed image; use /seeds/builtin/<name>.png "
                "or /seeds/folder/<file>.png as /seeds/ lists them",
            )
        if kind == "builtin":
            if name.removesuffix(".png") not in builtin_seed_names():
                return _error(404, f"no built-in seed {name!r}; see /seeds/")
            path = os.path.join(BUILTIN_SEEDS, name)
        else:
            try:  # the OSC rule for file paths: inside paths.seeds, no '..', no links out
                path = confine(name, self.osc.paths.seeds, what="seed image (paths.seeds)")
            except UserError as exc:
                return _error(404, str(exc))
        data = await self.loop.run_in_executor(None, Path(path).read_bytes)
        return web.Response(body=data, content_type="image/png", headers={"Cache-Control": "max-age=60"})

    # -- WebSocket --

    def _may_write(self, request: web.Request) -> bool:
        """Whether this connection may change state; UserError for a wrong token."""
        if not self.needs_token:
            return True
        given = request.query.get("token") or ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer ") :]
        if not given:
            return False
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPForbidden(text="wrong token; use the one printed at start (http.token)")
        return True

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if len(self.clients) >= self.settings.max_clients:
            return _error(
                503,
                f"{self.settings.max_clients} clients already (http.max_clients); close one, or raise http.max_clients",
            )
        can_write = self._may_write(request)
        ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE, heartbeat=20.0)
        await ws.prepare(request)
        client = Client(ws, f"{request.remote}:{_peer_port(request)}", can_write)
        self.clients.add(client)
        sender = self.loop.create_task(self._send_loop(client))
        try:
            async for msg in ws:
                if client.closing:
                    break
                if not client.limit.allow():
                    self.refused += 1
                    if client.limit.refused % 100 == 1:
                        self._fail(client, "", f"more than {WS_RATE[0]:g} messages a second; the rest are dropped")
                    continue
                if msg.type == WSMsgType.TEXT:
                    self._on_text(client, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._on_binary(client, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.clients.discard(client)
            client.closing = True
            sender.cancel()
            if not ws.closed:
                await ws.close()
        return ws

    async def _send_loop(self, client: Client) -> None:
        while True:
            data = await client.queue.get()
            try:
                if isinstance(data, bytes):
                    await client.ws.send_bytes(data)
                else:
                    await client.ws.send_str(data)
            except (ConnectionError, RuntimeError):
                return

    def _fail(self, client: Client, address: str, reason: str) -> None:
        self.refused += 1
        client.send(build(FAIL, address[:256], reason))

    def _on_text(self, client: Client, text: str) -> None:
        try:
            command = json.loads(text)
        except ValueError:
            self._fail(client, "", 'not JSON; send {"COMMAND": "LISTEN", "DATA": "/riff/alpha"}')
            return
        if not isinstance(command, dict):
            self._fail(client, "", 'not a JSON object; send {"COMMAND": ..., "DATA": ...}')
            return
        name, data = command.get("COMMAND"), command.get("DATA")
        if name in ("LISTEN", "IGNORE"):
            if not isinstance(data, str) or data not in self._listenable:
                self._fail(
                    client, str(data)[:256], f"{name}: no readable OSC method at {data!r}; see the namespace at /"
                )
            elif name == "LISTEN":
                client.listening.add(data)
            else:
                client.listening.discard(data)
        elif name == "RIFF_ENGINE":
            client.engine = bool(data)
            if client.engine:
                for message in self._last.values():
                    client.send(message)
        else:
            self._fail(client, "", f"unknown COMMAND {str(name)[:40]!r}; use LISTEN, IGNORE or RIFF_ENGINE")

    def _on_binary(self, client: Client, data: bytes) -> None:
        try:
            message = OscMessage(data)
        except Exception as exc:  # ParseError, and worse for hostile bytes
            self._fail(
                client,
                "",
                f"not an OSC message ({type(exc).__name__}); send one OSC 1.0 message per binary WebSocket message",
            )
            return
        if not client.can_write:
            self._fail(
                client,
                message.address,
                "read-only: changing the state needs the token (open the page with ?token=...; http.token)",
            )
            return
        try:
            self.osc.apply_message(message, f"web {client.peer}")
        except UserError as exc:
            self._fail(client, message.address, str(exc))
        except Exception as exc:  # a bug must not take the server down
            log.exception("web control message %s failed", message.address)
            self._fail(client, message.address, f"internal error ({type(exc).__name__})")

    # -- pushing --

    def _on_state(self, old: State, new: State, source: str) -> None:
        if not any(c.listening for c in self.clients):
            return
        messages = oscquery.pushes(new, [k for k, _ in changed_keys(old, new)])
        for client in list(self.clients):
            for path in client.listening & messages.keys():
                client.send(messages[path])

    def _on_event(self, event: Event) -> None:
        data = event.data
        if event.kind not in ("loop_started", "loop_scheduled"):
            return
        clip_id = str(data.get("clip_id") or "")
        self.images.add(clip_id, data.get("image"))
        info = {k: v for k, v in data.items() if k != "image" and _plain(v)}
        info["url"] = f"/loops/{clip_id}.png" if clip_id in self.images else ""
        kind = "RIFF_LOOP" if event.kind == "loop_started" else "RIFF_NEXT"
        text = json.dumps({"COMMAND": kind, "DATA": info})
        self._last[kind] = text
        for client in list(self.clients):
            if client.engine:
                client.send(text)

    async def _push_status(self) -> None:
        """Engine figures (the heard frame for the playhead) to the page, while one listens."""
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            listeners = [c for c in self.clients if c.engine]
            if not listeners:
                continue
            try:
                figures = {k: v for k, v in self.figures().items() if k not in PRIVATE_FIGURES and _plain(v)}
            except Exception:
                log.exception("engine figures failed")
                continue
            text = json.dumps({"COMMAND": "RIFF_STATUS", "DATA": figures})
            for client in listeners:
                client.send(text)


def _plain(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _peer_port(request: web.Request) -> int:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return int(peer[1]) if peer else 0


def _error(status: int, message: str) -> web.Response:
    """A clear 4xx/5xx: the reason in words, as plain text."""
    return web.Response(status=status, text=message + "\n")
