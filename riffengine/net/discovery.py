"""Zeroconf (mDNS/DNS-SD) advertising: ``_oscjson._tcp`` for the OSCQuery server and
``_osc._udp`` for the OSC port, so TouchDesigner, Max, ossia score or Chataigne list the engine
by themselves.

Only when the server listens beyond loopback (a loopback server cannot be reached from another
machine, so there is nothing to announce) and ``http.zeroconf`` is on. Announcing runs as a task
on the loop and a failure is logged, never fatal: clients can still connect by address.

Thread rule: :meth:`Advertiser.start` and :meth:`Advertiser.close` run on the loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

from zeroconf import ServiceInfo

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncZeroconf

log = logging.getLogger(__name__)

OSCJSON = "_oscjson._tcp.local."
OSC = "_osc._udp.local."


def local_addresses(host: str) -> list[str]:
    """The addresses to announce: ``host`` itself, or every non-loopback IPv4 address of this
    machine for a wildcard (0.0.0.0 / ::)."""
    if host.strip("[]") not in ("0.0.0.0", "::", ""):
        return [host.strip("[]")]
    import ifaddr  # zeroconf's own dependency

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                out.append(ip.ip)
    return out


def service_infos(
    instance: str, hostname: str, addresses: list[str], http_port: int, osc_port: int | None
) -> list[ServiceInfo]:
    """The DNS-SD records: the OSCQuery server, and the OSC port when it is reachable too."""
    server = f"{hostname}.local."
    packed = [ipaddress.ip_address(a).packed for a in addresses]
    infos = [
        ServiceInfo(
            OSCJSON,
            f"{instance}.{OSCJSON}",
            port=http_port,
            addresses=packed,
            server=server,
            properties={"txtvers": "1"},
        )
    ]
    if osc_port:
        infos.append(
            ServiceInfo(
                OSC, f"{instance}.{OSC}", port=osc_port, addresses=packed, server=server, properties={"txtvers": "1"}
            )
        )
    return infos


class Advertiser:
    """Announces the services until closed."""

    def __init__(self, host: str, http_port: int, osc_port: int | None) -> None:
        self.host = host
        self.http_port = http_port
        self.osc_port = osc_port
        self.zeroconf: AsyncZeroconf | None = None
        self.infos: list[ServiceInfo] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Announce in the background (probing takes a second or two)."""
        self._task = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        from zeroconf.asyncio import AsyncZeroconf

        hostname = socket.gethostname().split(".")[0]
        try:
            addresses = local_addresses(self.host)
            if not addresses:
                log.warning("zeroconf: no network address to announce")
                return
            self.infos = service_infos(
                f"riffengine-{hostname}-{self.http_port}", hostname, addresses, self.http_port, self.osc_port
            )
            interfaces = addresses if self.host.strip("[]") not in ("0.0.0.0", "::", "") else None
            self.zeroconf = AsyncZeroconf(interfaces=interfaces) if interfaces else AsyncZeroconf()
            for info in self.infos:
                await self.zeroconf.async_register_service(info, allow_name_change=True)
            log.info("zeroconf: announced %s", ", ".join(i.name for i in self.infos))
        except Exception as exc:  # noqa: BLE001 - discovery is a convenience, never fatal
            log.warning("zeroconf: cannot announce (%s); clients can still connect by address", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.zeroconf is not None:
            try:
                await self.zeroconf.async_unregister_all_services()
                await self.zeroconf.async_close()
            except Exception as exc:  # noqa: BLE001
                log.debug("zeroconf: closing: %s", exc)
            self.zeroconf = None
