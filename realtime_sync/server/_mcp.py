"""Remote MCP servers in the local server: a scripted tool listing and approval exchange.

OpenAI's service connects to the MCP servers named in ``session.tools`` (``type: "mcp"``),
lists their tools (``mcp_list_tools.*`` and an ``mcp_list_tools`` item), asks the client for
approval before a call when ``require_approval`` says so (an ``mcp_approval_request`` item,
answered by the client with an ``mcp_approval_response`` item) and then runs the call
(``response.mcp_call*`` and an ``mcp_call`` item). The local server never opens a network
connection: the tools an MCP server "has" are scripted (:data:`DEFAULT_TOOLS`, or
``ServerOptions.mcp_tools``) and a call's output is scripted by the responder
(:class:`realtime_sync.server.McpCall`).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["DEFAULT_TOOLS", "mcp_tools", "listed_tools", "needs_approval", "find_approval"]

DEFAULT_TOOLS: List[Dict[str, Any]] = [
    {"name": "echo", "description": "Returns its text argument.",
     "input_schema": {"type": "object", "properties": {"text": {"type": "string"}},
                      "required": ["text"]}},
]
"""The tools every scripted MCP server lists unless the server is given others."""


def mcp_tools(session: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The session's MCP tool configs by ``server_label``."""
    out: Dict[str, Dict[str, Any]] = {}
    for tool in session.get("tools") or []:
        if isinstance(tool, Mapping) and tool.get("type") == "mcp":
            out[str(tool.get("server_label"))] = dict(tool)
    return out


def _names(value: Any) -> Optional[List[str]]:
    """``allowed_tools`` / approval filter: a list of names, or ``{"tool_names": [...]}``."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, Mapping) and isinstance(value.get("tool_names"), list):
        return [str(v) for v in value["tool_names"]]
    return None


def listed_tools(config: Mapping[str, Any],
                 scripted: Optional[Sequence[Mapping[str, Any]]] = None) -> List[Dict[str, Any]]:
    """The tools an MCP server lists, narrowed by the config's ``allowed_tools``."""
    tools = [copy.deepcopy(dict(t)) for t in (scripted if scripted is not None else DEFAULT_TOOLS)]
    allowed = _names(config.get("allowed_tools"))
    return tools if allowed is None else [t for t in tools if t.get("name") in allowed]


def needs_approval(config: Mapping[str, Any], name: str) -> bool:
    """Whether a call of tool ``name`` waits for the client's approval.

    ``require_approval`` is ``"always"`` (the default), ``"never"``, or a filter
    ``{"always": {"tool_names": [...]}, "never": {"tool_names": [...]}}``.
    """
    rule = config.get("require_approval")
    if rule == "never":
        return False
    if isinstance(rule, Mapping):
        never = _names(rule.get("never")) or []
        always = _names(rule.get("always"))
        if name in never:
            return False
        if always is not None:
            return name in always
    return True


def find_approval(items: Sequence[Mapping[str, Any]], server_label: str,
                  name: str) -> Optional[Dict[str, Any]]:
    """The newest answered, not yet used approval request for this tool.

    Returns ``{"request_id": ..., "approve": bool}`` or None when the client has not answered
    an ``mcp_approval_request`` for ``server_label``/``name`` (or its answer was already used
    by an ``mcp_call``).
    """
    used = {i.get("approval_request_id") for i in items if i.get("type") == "mcp_call"}
    answers = {i.get("approval_request_id"): bool(i.get("approve")) for i in items
               if i.get("type") == "mcp_approval_response"}
    for item in reversed(items):
        if (item.get("type") == "mcp_approval_request" and item.get("server_label") == server_label
                and item.get("name") == name and item.get("id") in answers
                and item.get("id") not in used):
            return {"request_id": item["id"], "approve": answers[item["id"]]}
    return None
