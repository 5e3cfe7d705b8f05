"""The room index of one namespace (sans-IO): who is in which room, and who gets a broadcast.

Rules (the in-memory adapter of Socket.IO):

* A socket enters the index with :meth:`RoomIndex.add_socket`, which also puts it in the room
  named after its own sid (so ``emit(to=sid)`` reaches exactly that socket). Only a socket in
  the index can :meth:`~RoomIndex.join` rooms; joining is idempotent.
* :meth:`~RoomIndex.leave` takes a socket out of one room (its own room included, as in
  Socket.IO); :meth:`~RoomIndex.leave_all` takes it out of every room and out of the index,
  which is what a disconnect does.
* A room exists while it has members. ``join`` reports the rooms it created and ``leave`` /
  ``leave_all`` the rooms they emptied, so the shell can start and cancel a room's nursery;
  an emptied room is forgotten at once, so memory follows the live rooms only.
* :meth:`~RoomIndex.sids_in` computes a broadcast's recipients: the union of the given rooms
  (every socket when no room is given), minus the sockets in any ``except_rooms`` and the
  ``except_sids``, each socket once. It costs O(recipients + excluded), never a scan of every
  room.

Both maps (room -> sids, sid -> rooms) are kept in step by every method; nothing else writes
them.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from pyserver.socketio.packets import LocalProtocolError, Sid

__all__ = ["Room", "RoomIndex"]

Room = str
"""A room name. A socket's own room is named after its :class:`~pyserver.socketio.Sid`."""


class RoomIndex:
    """Rooms and their members, for one namespace."""

    __slots__ = ("_members", "_rooms", "version")

    def __init__(self) -> None:
        self._members: dict[Room, set[Sid]] = {}
        self._rooms: dict[Sid, set[Room]] = {}
        self.version = 0
        """Changes whenever membership may have: what was computed from the index at one
        version (a broadcast's recipients) holds until it changes."""

    # ------------------------------------------------------------------ membership

    def add_socket(self, sid: Sid) -> bool:
        """Register a newly connected socket and put it in its own room ``sid``.

        Returns True when this created the room ``sid`` (False only if some other socket had
        already joined a room of that name).
        """
        if sid in self._rooms:
            raise LocalProtocolError(f"socket {sid!r} is already in the room index")
        self.version += 1
        self._rooms[sid] = {sid}
        members = self._members.get(sid)
        if members is None:
            self._members[sid] = {sid}
            return True
        members.add(sid)
        return False

    def join(self, sid: Sid, rooms: Room | Iterable[Room]) -> set[Room]:
        """Put ``sid`` in ``rooms`` (one name or several); return the rooms this created."""
        own = self._rooms_of(sid)
        self.version += 1
        created: set[Room] = set()
        for room in (rooms,) if isinstance(rooms, str) else rooms:
            members = self._members.get(room)
            if members is None:
                self._members[room] = {sid}
                created.add(room)
            else:
                members.add(sid)
            own.add(room)
        return created

    def leave(self, sid: Sid, room: Room) -> bool:
        """Take ``sid`` out of ``room`` (a no-op if it was not in it); True if it emptied."""
        own = self._rooms_of(sid)
        if room not in own:
            return False
        self.version += 1
        own.discard(room)
        return self._drop_member(room, sid)

    def leave_all(self, sid: Sid) -> set[Room]:
        """Take ``sid`` out of every room and out of the index; return the emptied rooms.

        Call it when the socket disconnects. An unknown sid is a no-op (returns no room), so
        a disconnect racing a failed connect needs no care.
        """
        own = self._rooms.pop(sid, None)
        if own is None:
            return set()
        self.version += 1
        return {room for room in own if self._drop_member(room, sid)}

    def _drop_member(self, room: Room, sid: Sid) -> bool:
        members = self._members[room]
        members.discard(sid)
        if members:
            return False
        del self._members[room]
        return True

    def _rooms_of(self, sid: Sid) -> set[Room]:
        own = self._rooms.get(sid)
        if own is None:
            raise LocalProtocolError(f"socket {sid!r} is not in the room index")
        return own

    # ------------------------------------------------------------------ queries

    def sids_in(
        self,
        rooms: Room | Iterable[Room] = (),
        *,
        except_rooms: Room | Iterable[Room] = (),
        except_sids: Iterable[Sid] = (),
    ) -> set[Sid]:
        """The recipients of a broadcast, each once (a new set the caller may keep).

        ``rooms`` empty means every socket of the namespace. Unknown rooms are empty.
        """
        members = self._members
        if isinstance(rooms, str):
            rooms = (rooms,)
        recipients: set[Sid] = set()
        any_room = False
        for room in rooms:
            any_room = True
            found = members.get(room)
            if found:
                recipients |= found
        if not any_room:
            recipients = set(self._rooms)
        if isinstance(except_rooms, str):
            except_rooms = (except_rooms,)
        for room in except_rooms:
            found = members.get(room)
            if found:
                recipients -= found
        recipients.difference_update(except_sids)
        return recipients

    def rooms_of(self, sid: Sid) -> Set[Room]:
        """The rooms ``sid`` is in, its own room included (empty for an unknown sid).

        A read-only view: copy it before joining or leaving while iterating.
        """
        return self._rooms.get(sid, frozenset())

    def members(self, room: Room) -> Set[Sid]:
        """The sockets in ``room`` (empty if it does not exist); a read-only view."""
        return self._members.get(room, frozenset())

    def __contains__(self, sid: object) -> bool:
        """Whether the socket ``sid`` is in the index."""
        return sid in self._rooms

    @property
    def socket_count(self) -> int:
        """How many sockets the namespace has."""
        return len(self._rooms)

    @property
    def room_count(self) -> int:
        """How many rooms exist, the sockets' own rooms included."""
        return len(self._members)

    def room_sizes(self) -> dict[Room, int]:
        """Every room and its member count (for statistics; O(rooms))."""
        return {room: len(sids) for room, sids in self._members.items()}
