"""`-u/--user user|uid[:group|gid]`: who a container's command runs as, as Docker resolves
it. Names are looked up in the host's user and group databases (/etc/passwd, /etc/group):
containers run host commands on the host's filesystem.

- a user name: its uid, primary gid and home; a uid: the same from its passwd entry, or
  gid 0 and home / when it has none (as Docker);
- the supplementary groups: with no group given, the groups that list the user by name
  (os.getgrouplist, which includes the primary gid); none beyond the gid for a uid without a
  passwd entry, nor when a group is given (Docker's rule);
- a group name: its gid; a gid: as it is."""

from __future__ import annotations

from ..records import Record


class Credentials(Record):
    """What the child sets after entering the namespaces: groups, gid, then uid."""

    uid: int
    gid: int
    groups: list[int]
    home: str


class UnknownUser(ValueError):
    """Docker's message: "unable to find user NAME: no matching entries in passwd file"."""


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit():
        value = int(text)
        if value < 2**32 - 1:
            return value
        raise UnknownUser(f"invalid user or group id {text}: at most 4294967294")
    return None


def resolve(spec: str) -> Credentials:
    """The credentials of a -u value, or UnknownUser naming what is missing."""
    import grp
    import pwd

    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise UnknownUser(f"invalid user {spec!r}: use user, uid, user:group or uid:gid")
    uid = _number(user)
    try:
        entry = pwd.getpwuid(uid) if uid is not None else pwd.getpwnam(user)
    except KeyError:
        if uid is None:
            raise UnknownUser(f"unable to find user {user}: no matching entries in passwd "
                              "file") from None
        entry = None
    if entry is not None:
        uid, gid, home = entry.pw_uid, entry.pw_gid, entry.pw_dir or "/"
        groups = sorted(set(_grouplist(entry.pw_name, gid)))
    else:
        assert uid is not None
        gid, home, groups = 0, "/", [0]
    if sep:
        gid_ = _number(group)
        if gid_ is None:
            try:
                gid_ = grp.getgrnam(group).gr_gid
            except KeyError:
                raise UnknownUser(f"unable to find group {group}: no matching entries in "
                                  "group file") from None
        gid, groups = gid_, [gid_]
    return Credentials(uid=uid, gid=gid, groups=groups, home=home)


def _grouplist(name: str, gid: int) -> list[int]:
    import os

    try:
        return os.getgrouplist(name, gid)
    except OSError:
        return [gid]


def apply(creds: Credentials) -> None:
    """In a child before exec: drop to the credentials (groups first, uid last)."""
    import os

    os.setgroups(creds.groups)
    os.setgid(creds.gid)
    os.setuid(creds.uid)
