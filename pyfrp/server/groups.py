"""Load-balancing groups (``loadBalancer.group`` / ``groupKey``, server/group): proxies of one
group share a port (tcp) or a route (http, https, tcpmux) and take its users in turn.

A group is created by its first member and ends with its last; a member must give the group's
key (``group auth failed``) and, for tcp, the same remote port (``group should have same remote
port``). The shared listener or route belongs to the group, not to any member, so members come
and go (a health check taking one down) without the others noticing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pyfrp.server.ports import PortError

if TYPE_CHECKING:
    from pyfrp.vhost.conn import WorkConn

M = TypeVar("M")

GROUP_KINDS = ("tcp", "http", "https", "tcpmux")  # the proxy types that may join groups
AUTH_FAILED = "group auth failed"
PARAMS_INVALID = "group params invalid"
DIFFERENT_PORT = "group should have same remote port"


class Group(Generic[M]):
    """Members taken in turn; ``shared`` is what the first member set up for all (a listener
    or a route), torn down by ``release`` when the last one leaves."""

    def __init__(self, name: str, key: str, params: Any) -> None:
        self.name = name
        self.key = key
        self.params = params  # what every member must agree on (tcp: the remote port)
        self.members: list[M] = []
        self.shared: Any = None
        self.release: Callable[[], None] | None = None
        self._turn = itertools.count()

    def pick(self) -> M:
        return self.members[next(self._turn) % len(self.members)]


class Groups:
    """All groups of one kind of proxy, by their key in that kind (tcp: the group name; http:
    the route)."""

    def __init__(self) -> None:
        self._groups: dict[Any, Group[Any]] = {}

    def join(self, where: Any, name: str, key: str, params: Any, member: M) -> Group[M]:
        """Add ``member``; raises PortError with frp's texts. A new group has ``shared`` None:
        the caller sets it up (and ``release``)."""
        group = self._groups.get(where)
        if group is None:
            group = self._groups[where] = Group(name, key, params)
        elif group.name != name:
            raise PortError(PARAMS_INVALID)
        elif group.params != params:
            raise PortError(DIFFERENT_PORT if isinstance(params, int) else PARAMS_INVALID)
        elif group.key != key:
            raise PortError(AUTH_FAILED)
        group.members.append(member)
        return group

    def leave(self, where: Any, member: object) -> None:
        group = self._groups.get(where)
        if group is None or member not in group.members:
            return
        group.members.remove(member)
        if not group.members:
            del self._groups[where]
            if group.release is not None:
                group.release()


class GroupOpener:
    """The work connections of a vhost route shared by a group: each from the next member."""

    def __init__(self, group: Group[Any]) -> None:
        self.group = group

    @property
    def name(self) -> str:
        return self.group.name

    async def open_work_conn(
        self, src: tuple[str, int], dst: tuple[str, int] = ("", 0)
    ) -> WorkConn | None:
        member = self.group.pick()
        work: WorkConn | None = await member.open_work_conn(src, dst)
        return work

    def conn_opened(self) -> None:
        """Connections of a group's route are not told apart by member (nor counted)."""

    def conn_closed(self, bytes_in: int, bytes_out: int) -> None:
        pass
