"""A small MCP server with edge-case tools, for Warden's tests (needs the `mcp` 2.x package: `make tools`).

    python tests/mcp/edge_server.py --transport stdio
    python tests/mcp/edge_server.py --transport http --port N   # Streamable HTTP at http://127.0.0.1:N/mcp

Over HTTP it prints `listening on http://127.0.0.1:<port>/mcp` on stdout once it serves requests
(`--port 0` picks a free port; read it from that line). Over stdio it prints nothing on stdout but
the protocol. Logs go to stderr.

Tools: add, slow, fail (an isError result), huge (a large text), image (an image and a text block),
add_tool / remove_tool (change the tool list at run time and tell the client with
`notifications/tools/list_changed`).

The SDK serves both protocol eras on either transport, picked by the client: the 2025 `initialize`
handshake (on HTTP with an `Mcp-Session-Id` session unless `--stateless`) and the 2026-07-28
per-request envelope (`server/discover`, no session). In the handshake era the list-changed
notification rides the add_tool/remove_tool call's own response stream (`stream="request"`, the
default; dropped with `--json-response`, which has no such stream), or the session's GET stream
(`stream="standalone"`; dropped when no GET stream is open).
In the 2026-07-28 era it reaches only `subscriptions/listen` streams, whatever `stream` says.
"""

from __future__ import annotations

import argparse
import base64
import socket
import sys
from typing import Literal

import anyio
import mcp_types as types
from mcp.server import MCPServer, NotificationOptions
from mcp.server.mcpserver import Context, Image
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

# A 1x1 red PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)

server = MCPServer("warden-edge", version="1.0.0", log_level="WARNING")

# MCPServer declares `tools.listChanged` false in the handshake era and offers no way to say
# otherwise; every transport asks the low-level server for these options, so answer for it.
_lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
_create_options = _lowlevel.create_initialization_options


def _create_options_with_list_changed(notification_options=None, *args, **kwargs):
    return _create_options(notification_options or NotificationOptions(tools_changed=True), *args, **kwargs)


_lowlevel.create_initialization_options = _create_options_with_list_changed  # type: ignore[method-assign]


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(structured_output=False)
async def slow(seconds: float) -> str:
    """Sleep for `seconds`, then answer."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def fail(message: str) -> types.CallToolResult:
    """Fail with `message` (a tool execution error: isError true, the message as its only text)."""
    # Returned rather than raised: a raised ToolError reads "Error executing tool fail: <message>".
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


@server.tool(structured_output=False)
def huge(kib: int) -> str:
    """Answer `kib` KiB of 'x'."""
    return "x" * (1024 * kib)


@server.tool(structured_output=False)
def image() -> list[Image | str]:
    """Answer a 1x1 PNG and a text block."""
    return [Image(data=PNG, format="png"), "a 1x1 red PNG"]


async def _tools_changed(ctx: Context, stream: Literal["request", "standalone"]) -> None:
    # 2026-07-28: published to the `subscriptions/listen` streams (none listening is fine).
    await ctx.notify_tools_changed()
    request = ctx.request_context
    if request.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
        related = request.request_id if stream == "request" else None
        await request.session.send_notification(types.ToolListChangedNotification(), related_request_id=related)


@server.tool(structured_output=False)
async def add_tool(name: str, ctx: Context, stream: Literal["request", "standalone"] = "request") -> str:
    """Register a tool `name` (it answers "<name> called") and send notifications/tools/list_changed."""
    if server._tool_manager.get_tool(name) is not None:  # pyright: ignore[reportPrivateUsage]
        raise ToolError(f"tool {name} exists")

    def dynamic() -> str:
        return f"{name} called"

    server.add_tool(dynamic, name=name, description=f"Added at run time by add_tool({name!r}).", structured_output=False)
    await _tools_changed(ctx, stream)
    return f"added {name}"


@server.tool(structured_output=False)
async def remove_tool(name: str, ctx: Context, stream: Literal["request", "standalone"] = "request") -> str:
    """Remove the tool `name` and send notifications/tools/list_changed."""
    server.remove_tool(name)  # ToolError if unknown
    await _tools_changed(ctx, stream)
    return f"removed {name}"


def require_header(app, name: str, value: str):
    """Answer 401 to any HTTP request without the header `name: value` (a static auth header)."""
    wanted = (name.lower().encode(), value.encode())

    async def checked(scope, receive, send):
        if scope["type"] == "http" and wanted not in scope["headers"]:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"missing or wrong " + wanted[0]})
            return
        await app(scope, receive, send)

    return checked


async def serve_http(host: str, port: int, stateless: bool, json_response: bool, required: str | None) -> None:
    import uvicorn

    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        json_response=json_response,
        # Behind a gateway the Host header is the gateway's, so no DNS-rebinding check.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host=host,
    )
    if required:
        name, _, value = required.partition("=")
        app = require_header(app, name, value)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    port = sock.getsockname()[1]
    # An open GET stream would otherwise hold a graceful shutdown forever.
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
    http = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(http.serve, [sock])
        while not http.started:
            if http.should_exit:
                return
            await anyio.sleep(0.01)
        print(f"listening on http://{host}:{port}/mcp", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="HTTP port; 0 picks a free one")
    parser.add_argument("--stateless", action="store_true", help="HTTP: no Mcp-Session-Id sessions")
    parser.add_argument("--json-response", action="store_true", help="HTTP: JSON bodies instead of SSE streams")
    parser.add_argument("--require-header", metavar="NAME=VALUE", help="HTTP: refuse requests without this header")
    args = parser.parse_args()
    if args.transport == "stdio":
        server.run("stdio")
    else:
        anyio.run(serve_http, args.host, args.port, args.stateless, args.json_response, args.require_header)


if __name__ == "__main__":
    sys.exit(main())
