"""A one-shot MCP client over Streamable HTTP, for Warden's end-to-end tests (needs `mcp` 2.x: `make tools`).

    python tests/mcp/mcp_client.py --url http://127.0.0.1:PORT/mcp --header 'x-bf-vk: sk-bf-...' \\
        --era legacy|modern [--call NAME --args '{"a": 1}'] [--wait-list-changed SECONDS]

--era legacy: the `initialize` handshake at 2025-11-25 (`Client(mode="legacy")`); the server may
hand out an Mcp-Session-Id. --era modern: the 2026-07-28 stateless envelope (`Client(mode="2026-07-28")`
adopts the version without wire traffic, then one real `server/discover` is sent and adopted; there is
no `initialize` and no fallback to it).

It lists the tools (all pages), optionally calls one, and prints one JSON object as its last stdout line:
  {"protocol_version", "server_name", "session_id" (null without one), "tools": [names in server order],
   "call": {"ok": true, "is_error", "text", "structured"} | {"ok": false, "error": {"code", "message", "data"?}},
   "list_changed": bool, "tools_after": [names] (only when list_changed)}
A JSON-RPC error from the call is an outcome (exit 0). A failure to connect, handshake or list exits 1
with a message on stderr.

--wait-list-changed N: before listing, get ready to hear `notifications/tools/list_changed` (legacy: the
session's GET stream, or the call's own response stream; modern: a `subscriptions/listen` stream), then
after the call print `{"listening": true}` and wait up to N seconds for it (seen by the message handler).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import LATEST_MODERN_VERSION


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


async def tool_names(client: Client) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [tool.name for tool in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            return names


async def run(args: argparse.Namespace) -> dict[str, Any]:
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            raise SystemExit(f"--header wants 'Name: value', got {header!r}")
        headers[name.strip()] = value.strip()
    seen: dict[str, Any] = {"session_id": None}
    get_stream_open, list_changed = anyio.Event(), anyio.Event()

    async def on_response(response: httpx2.Response) -> None:
        seen["session_id"] = response.headers.get("mcp-session-id") or seen["session_id"]
        if response.request.method == "GET" and response.status_code == 200:
            get_stream_open.set()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            list_changed.set()

    async with AsyncExitStack() as stack:
        hooks = {"response": [on_response]}
        timeout = httpx2.Timeout(30, read=300)
        http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks))
        client = await stack.enter_async_context(
            Client(
                streamable_http_client(args.url, http_client=http),
                mode="legacy" if args.era == "legacy" else LATEST_MODERN_VERSION,
                message_handler=on_message,
                read_timeout_seconds=args.timeout,
                cache=None,
            )
        )
        if args.era == "modern":
            raw = await client.session.send_discover(LATEST_MODERN_VERSION)
            client.session.adopt(types.DiscoverResult.model_validate(raw))
        if args.wait_list_changed is not None:
            if args.era == "modern":
                await stack.enter_async_context(client.listen(tools_list_changed=True))
            else:
                with anyio.move_on_after(5):  # a server may offer no GET stream
                    await get_stream_open.wait()
        out: dict[str, Any] = {
            "protocol_version": client.protocol_version,
            "server_name": client.server_info.name if client.server_info else None,
            "session_id": seen["session_id"],
            "tools": await tool_names(client),
        }
        if args.call:
            try:
                result = await client.call_tool(args.call, json.loads(args.args))
                text = "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))
                structured = result.structured_content
                out["call"] = {"ok": True, "is_error": bool(result.is_error), "text": text, "structured": structured}
            except MCPError as e:
                out["call"] = {"ok": False, "error": e.error.model_dump(mode="json", exclude_none=True)}
        out["list_changed"] = list_changed.is_set()
        if args.wait_list_changed is not None:
            emit({"listening": True})
            with anyio.move_on_after(args.wait_list_changed):
                await list_changed.wait()
            out["list_changed"] = list_changed.is_set()
        if out["list_changed"]:
            out["tools_after"] = await tool_names(client)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    parser.add_argument("--era", choices=["legacy", "modern"], required=True)
    parser.add_argument("--call", metavar="NAME")
    parser.add_argument("--args", default="{}", help="the call's arguments, a JSON object")
    parser.add_argument("--wait-list-changed", type=float, metavar="SECONDS")
    parser.add_argument("--timeout", type=float, default=30, help="read timeout per request, seconds")
    args = parser.parse_args()
    try:
        out = anyio.run(run, args)
    except Exception as e:  # connection, handshake or listing failure
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        code = f" ({e.code})" if isinstance(e, MCPError) else ""
        print(f"mcp_client: {type(e).__name__}{code}: {e}", file=sys.stderr)
        return 1
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
