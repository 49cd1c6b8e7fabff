"""The engine's network face: OSCQuery over HTTP and WebSocket, the web surface, zeroconf.

- :mod:`riffengine.net.oscquery`: the OSCQuery namespace built from the parameter table (pure);
- :mod:`riffengine.net.server`: the aiohttp server in the engine's loop (HTTP, WebSocket,
  static files, loop images, security);
- :mod:`riffengine.net.discovery`: zeroconf advertising beyond loopback;
- ``static/``: the web page, shipped as package data (no build step, no CDN).
"""
