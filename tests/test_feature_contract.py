"""Features talk to the client only through ``client.host`` (realtime_sync._core.host.ClientHost)
and its public API: no feature module touches a private attribute of a client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import realtime_sync as rs
from realtime_sync._core.host import ClientHost

PACKAGE = Path(rs.__file__).parent
FEATURES = ["conversation.py", "tools.py", "transcription.py", "translation.py",
            "_features/live_session.py", "voice_chat.py", "gui.py", "audio/_stream.py",
            "audio/_speaker.py"]
CLIENT_NAMES = {"client", "_client", "target", "host", "_host"}
STRING_ACCESSORS = {"getattr", "hasattr", "setattr", "delattr"}
# the command-line front ends use the Transcriber / Translator / client through their public API
CLI_MODULES = ["cli/__init__.py", "cli/_translate.py", "cli/_support.py"]
CLI_NAMES = CLIENT_NAMES | {"tr", "transcriber", "translator", "conversation", "chat"}


def private_client_accesses(path: Path, names=CLIENT_NAMES):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else (
            owner.attr if isinstance(owner, ast.Attribute) else None)
        if name in names:
            found.append(f"{path.name}:{node.lineno}: {name}.{node.attr}")
        if (isinstance(owner, ast.Subscript) and isinstance(owner.value, ast.Attribute)
                and owner.value.attr == "__dict__"):
            found.append(f"{path.name}:{node.lineno}: __dict__ access")
    for node in ast.walk(tree):  # getattr(client, "_session_ended", ...) and friends
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in STRING_ACCESSORS and len(node.args) >= 2):
            owner, attr = node.args[0], node.args[1]
            name = owner.id if isinstance(owner, ast.Name) else (
                owner.attr if isinstance(owner, ast.Attribute) else None)
            if (name in names and isinstance(attr, ast.Constant) and isinstance(attr.value, str)
                    and attr.value.startswith("_") and not attr.value.startswith("__")):
                found.append(f"{path.name}:{node.lineno}: {node.func.id}({name}, {attr.value!r})")
    for node in ast.walk(tree):  # client.__dict__["_tools"] and friends
        if (isinstance(node, ast.Attribute) and node.attr == "__dict__"
                and isinstance(node.value, ast.Name) and node.value.id in names):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.__dict__")
    return found


@pytest.mark.parametrize("module", FEATURES)
def test_feature_modules_use_no_private_attribute_of_the_client(module):
    path = PACKAGE / module
    if not path.exists():
        pytest.skip(f"{module} is not part of this tree")
    assert private_client_accesses(path) == []


@pytest.mark.parametrize("module", CLI_MODULES)
def test_command_line_modules_use_no_private_attribute_of_what_they_drive(module):
    path = PACKAGE / module
    if not path.exists():
        pytest.skip(f"{module} is not part of this tree")
    assert private_client_accesses(path, CLI_NAMES) == []


def test_a_private_access_through_getattr_with_a_string_is_caught(tmp_path):
    sample = tmp_path / "feature.py"
    sample.write_text(
        "def f(client, self, tr):\n"
        "    a = getattr(client, '_session_ended', False)\n"
        "    b = hasattr(self._client, '_closed')\n"
        "    c = getattr(client, '__class__')\n"
        "    d = getattr(client, 'connected')\n"
        "    e = getattr(tr, '_streams')\n"
        "    return a, b, c, d, e\n", encoding="utf-8")
    assert private_client_accesses(sample) == [
        "feature.py:2: getattr(client, '_session_ended')",
        "feature.py:3: hasattr(_client, '_closed')",
    ]
    assert private_client_accesses(sample, CLI_NAMES)[-1] == "feature.py:6: getattr(tr, '_streams')"


def test_the_clients_host_implements_the_declared_contract():
    client = rs.RealtimeClient(url="ws://127.0.0.1:9/v1/realtime", api_key="sk-test-key")
    host = client.host
    for name in [n for n in dir(ClientHost) if not n.startswith("_")]:
        assert hasattr(host, name), name
    assert host.feature("x", dict) is host.feature("x", dict)  # one instance per client
    assert client.tools is client.tools and host.peek_feature("tools") is client.tools
    client.close()
