"""Features talk to the client only through ``client.host`` (realtime_sync._host.ClientHost)
and its public API: no feature module touches a private attribute of a client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import realtime_sync as rs
from realtime_sync._host import ClientHost

PACKAGE = Path(rs.__file__).parent
FEATURES = ["conversation.py", "tools.py", "transcription.py", "translation.py",
            "voice_chat.py", "gui.py", "audio/_stream.py", "audio/_speaker.py"]
CLIENT_NAMES = {"client", "_client", "target", "host", "_host"}


def private_client_accesses(path: Path):
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
        if name in CLIENT_NAMES:
            found.append(f"{path.name}:{node.lineno}: {name}.{node.attr}")
        if (isinstance(owner, ast.Subscript) and isinstance(owner.value, ast.Attribute)
                and owner.value.attr == "__dict__"):
            found.append(f"{path.name}:{node.lineno}: __dict__ access")
    for node in ast.walk(tree):  # client.__dict__["_tools"] and friends
        if (isinstance(node, ast.Attribute) and node.attr == "__dict__"
                and isinstance(node.value, ast.Name) and node.value.id in CLIENT_NAMES):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.__dict__")
    return found


@pytest.mark.parametrize("module", FEATURES)
def test_feature_modules_use_no_private_attribute_of_the_client(module):
    path = PACKAGE / module
    if not path.exists():
        pytest.skip(f"{module} is not part of this tree")
    assert private_client_accesses(path) == []


def test_the_clients_host_implements_the_declared_contract():
    client = rs.RealtimeClient(url="ws://127.0.0.1:9/v1/realtime", api_key="sk-test-key")
    host = client.host
    for name in [n for n in dir(ClientHost) if not n.startswith("_")]:
        assert hasattr(host, name), name
    assert host.feature("x", dict) is host.feature("x", dict)  # one instance per client
    assert client.tools is client.tools and host.peek_feature("tools") is client.tools
    client.close()
