"""Links, addresses and routes through pyroute2's IPRoute, shaped like `ip link` and `ip addr`.

Only this module imports pyroute2, and only when a bridge network is used,
so `run --network none` and `--network host` never pay for it.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import sys
import types

from layerlab.engine.errors import ContainerError

log = logging.getLogger(__name__)

_iproute_class = None


def iproute_class():
    """Return a factory of pyroute2 IPRoute objects that works in and out of a running asyncio loop.

    pyroute2 0.9's synchronous IPRoute drives its own event loop, which fails
    in a thread whose loop is already running, as in the Jupyter kernel. There
    the factory returns an IPRoute that lives on a worker thread instead.
    """
    cls = _load_iproute_class()

    def make(*args, **kwargs):
        if _event_loop_running():
            return ThreadBoundIPRoute(lambda: cls(*args, **kwargs))
        return cls(*args, **kwargs)

    return make


def _event_loop_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ThreadBoundIPRoute:
    """An IPRoute created and used on one worker thread, so no call runs inside the caller's event loop.

    Method calls are forwarded to the worker and wait for it; results that
    are generators (pyroute2 0.9 returns dumps lazily) are read to a list
    there, because reading them in the caller's thread would talk netlink
    from the wrong loop.
    """

    def __init__(self, factory):
        from concurrent.futures import ThreadPoolExecutor

        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._ipr = self._executor.submit(factory).result()

    def _call(self, method, *args, **kwargs):
        def invoke():
            result = method(*args, **kwargs)
            if isinstance(result, types.GeneratorType):
                return list(result)
            return result

        return self._executor.submit(invoke).result()

    def __getattr__(self, name):
        attribute = getattr(self._ipr, name)
        if not callable(attribute):
            return attribute
        return lambda *args, **kwargs: self._call(attribute, *args, **kwargs)

    def close(self) -> None:
        try:
            self._call(self._ipr.close)
        finally:
            self._executor.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _load_iproute_class():
    """Import and return pyroute2's IPRoute without running the pyroute2 package's __init__.

    pyroute2/__init__.py imports every pyroute2 module (NDB, IPDB, nftables,
    wireless...), ~0.2 s in a fresh process, while IPRoute alone takes
    ~0.06 s (pyroute2 0.9.7, Python 3.11, measured with `-X importtime`).
    A package stub stands in while the submodule loads and is removed
    afterwards, so a later `import pyroute2` runs the real __init__, which
    finds the loaded submodules in sys.modules.
    """
    global _iproute_class
    if _iproute_class is not None:
        return _iproute_class
    if "pyroute2" in sys.modules:
        from pyroute2.iproute.linux import IPRoute

        _iproute_class = IPRoute
        return IPRoute

    spec = importlib.util.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations:
        raise ContainerError("pyroute2 is not installed: install it (`pip install pyroute2`) or use --network host")
    stub = types.ModuleType("pyroute2")
    stub.__path__ = list(spec.submodule_search_locations)
    stub.__spec__ = spec
    sys.modules["pyroute2"] = stub
    try:
        from pyroute2.iproute.linux import IPRoute
    finally:
        if sys.modules.get("pyroute2") is stub:
            del sys.modules["pyroute2"]
    _iproute_class = IPRoute
    return IPRoute


def netlink_error_code(error: BaseException) -> int | None:
    """Return the errno of a pyroute2 NetlinkError (its `code`), or None for other errors."""
    return getattr(error, "code", None)


def ensure_bridge(ipr, name: str, address: str, prefixlen: int) -> int:
    """Create bridge `name` with `address/prefixlen` if it is missing and bring it up; return its index.

    Two launchers may race to create it, so EEXIST from either step counts
    as success.
    """
    indexes = ipr.link_lookup(ifname=name)
    if not indexes:
        try:
            ipr.link("add", ifname=name, kind="bridge")
            log.info("created bridge %s", name)
        except Exception as error:
            if netlink_error_code(error) != errno.EEXIST:
                raise ContainerError(f"cannot create bridge {name}: {error}") from None
        indexes = ipr.link_lookup(ifname=name)
    index = indexes[0]
    current = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
    if (address, prefixlen) not in current:
        try:
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        except Exception as error:
            if netlink_error_code(error) != errno.EEXIST:
                raise ContainerError(f"cannot set address {address}/{prefixlen} on bridge {name}: {error}") from None
    ipr.link("set", index=index, state="up")
    return index


def add_veth(ipr, host_name: str, bridge_index: int, peer_name: str, netns_fd: int) -> None:
    """Create a veth pair: `host_name` on the bridge, `peer_name` created directly in the network namespace.

    Creating the peer in the target namespace (IFLA_NET_NS_FD in the peer's
    attributes, as `ip link add ... peer name eth0 netns PID` does) avoids a
    rename and a clash with a host link that is also called eth0.
    """
    try:
        ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_name, "net_ns_fd": netns_fd})
    except Exception as error:
        raise ContainerError(f"cannot create veth pair {host_name}/{peer_name}: {error}") from None
    index = ipr.link_lookup(ifname=host_name)[0]
    ipr.link("set", index=index, master=bridge_index, state="up")


def configure_inside(netns_fd: int, ifname: str, address: str, prefixlen: int, gateway: str | None) -> None:
    """Give `ifname` in the network namespace its address, bring it up and route the default via `gateway`."""
    ipr = open_in_netns(netns_fd)
    try:
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        if gateway:
            try:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
            except Exception as error:
                # A second network (`network connect`) keeps the first one's default route.
                if netlink_error_code(error) != errno.EEXIST:
                    raise
    except ContainerError:
        raise
    except Exception as error:
        raise ContainerError(f"cannot configure {ifname} with {address}/{prefixlen} in the container: {error}") from None
    finally:
        # An open netlink socket keeps the namespace, and with it the veth, alive.
        ipr.close()


def open_in_netns(netns_fd: int):
    """Return an IPRoute whose socket lives in the network namespace `netns_fd`.

    A socket belongs to the namespace its creator was in, so this thread
    enters the namespace, opens the socket, and returns. pyroute2's own
    `netns=` option forks a helper process for that instead.
    """
    from layerlab.engine.runtime import syscalls

    cls = _load_iproute_class()

    def create():
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
            try:
                ipr = cls()
                ipr.link_lookup(ifname="lo")  # forces the socket open while still inside
            finally:
                syscalls.setns(own, syscalls.CLONE_NEWNET)
        finally:
            os.close(own)
        return ipr

    if _event_loop_running():
        return ThreadBoundIPRoute(create)
    return create()


def delete_link(ipr, name: str) -> bool:
    """Delete link `name`; return False if it did not exist."""
    indexes = ipr.link_lookup(ifname=name)
    if not indexes:
        return False
    try:
        ipr.link("del", index=indexes[0])
    except Exception as error:
        if netlink_error_code(error) == errno.ENODEV:
            return False
        raise
    log.info("deleted link %s", name)
    return True


def link_names(ipr) -> list[str]:
    return [link.get("ifname") for link in ipr.get_links()]
