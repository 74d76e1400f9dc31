"""The embedded resolver's name table: who sees which names (pure, no sockets)."""

from __future__ import annotations

from shoal.dns.table import Entry, NameTable, View


def view(sandbox: str, *entries: tuple[str, str, list[str]], forward: bool = True) -> View:
    return View(sandbox_id=sandbox,
                entries=[Entry(network_id=net, ip=ip, names=names, ptr=names[0])
                         for net, ip, names in entries],
                networks=list(dict.fromkeys(net for net, _ip, _names in entries)),
                forward=forward, upstreams=[])


def test_a_name_resolves_on_a_shared_network_only() -> None:
    t = NameTable()
    t.put(view("web", ("front", "172.18.0.2", ["web", "abc123"])))
    t.put(view("db", ("back", "172.19.0.2", ["db"])))
    t.put(view("api", ("front", "172.18.0.3", ["api"]), ("back", "172.19.0.3", ["api"])))
    assert t.lookup("web", "api") == ["172.18.0.3"]  # its address on the shared network
    assert t.lookup("db", "api") == ["172.19.0.3"]
    assert t.lookup("web", "db") is None  # only on back: web does not see it
    assert t.lookup("db", "web") is None
    assert t.lookup("api", "web") == ["172.18.0.2"] and t.lookup("api", "db") == ["172.19.0.2"]
    assert t.lookup("web", "web") == ["172.18.0.2"]  # itself
    assert t.lookup("stranger", "web") is None  # an asker the table does not know


def test_names_ignore_case_and_the_trailing_dot() -> None:
    t = NameTable()
    t.put(view("a", ("n", "10.0.0.2", ["MyWeb", "alias.Local"])))
    for name in ("myweb", "MYWEB", "myweb.", "MyWeB.", "alias.local", "ALIAS.LOCAL."):
        assert t.lookup("a", name) == ["10.0.0.2"], name
    assert t.lookup("a", "myweb.local") is None
    assert t.lookup("a", "alias") is None
    assert t.lookup("a", "") is None


def test_an_alias_of_several_containers_has_all_their_addresses_in_turn() -> None:
    t = NameTable()
    t.put(view("w1", ("n", "10.0.0.2", ["w1", "web"])))
    t.put(view("w2", ("n", "10.0.0.3", ["w2", "web"])))
    t.put(view("w3", ("n", "10.0.0.4", ["w3", "WEB"])))
    t.put(view("client", ("n", "10.0.0.9", ["client"])))
    answers = [t.lookup("client", "web") for _ in range(4)]
    assert answers[0] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert answers[1] == ["10.0.0.3", "10.0.0.4", "10.0.0.2"]
    assert answers[2] == ["10.0.0.4", "10.0.0.2", "10.0.0.3"]
    assert answers[3] == answers[0]
    assert t.lookup("client", "w2") == ["10.0.0.3"]
    assert t.addresses("client", "web") == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_put_replaces_a_view_and_drop_forgets_it() -> None:
    t = NameTable()
    t.put(view("a", ("n", "10.0.0.2", ["old", "shared"])))
    t.put(view("b", ("n", "10.0.0.3", ["b", "shared"])))
    before = t.generation
    t.put(view("a", ("n", "10.0.0.5", ["new", "shared"])))
    assert t.generation > before
    assert t.lookup("b", "old") is None
    assert t.lookup("b", "new") == ["10.0.0.5"]
    assert sorted(t.addresses("b", "shared") or []) == ["10.0.0.3", "10.0.0.5"]
    assert t.reverse("b", "10.0.0.2") is None and t.reverse("b", "10.0.0.5") == "new"
    t.drop("a")
    assert t.lookup("b", "new") is None and t.lookup("b", "shared") == ["10.0.0.3"]
    assert t.view("a") is None and t.lookup("a", "b") is None
    t.drop("a")  # twice: nothing to do


def test_reverse_names_follow_the_shared_networks() -> None:
    t = NameTable()
    t.put(view("web", ("front", "172.18.0.2", ["web"])))
    t.put(view("db", ("back", "172.19.0.2", ["db"])))
    t.put(view("api", ("front", "172.18.0.3", ["api"])))
    assert t.reverse("api", "172.18.0.2") == "web"
    assert t.reverse("api", "172.19.0.2") is None  # db is not on front
    assert t.reverse("api", "172.18.0.99") is None


def test_the_view_is_kept_as_put() -> None:
    t = NameTable()
    v = View(sandbox_id="x", entries=[], networks=["n"], forward=False,
             upstreams=["192.0.2.1:5353"])
    t.put(v)
    assert t.view("x") == v and t.lookup("x", "anything") is None
