"""The server's full command set: one registry built from every command module.

Later issues add their modules (permissions, status) to ``build_registry`` so
the server and the tests see the same commands.
"""

from __future__ import annotations

from ldapsrv import __version__
from ldapsrv.admin import (
    commands_audit,
    commands_directory,
    commands_health,
    commands_permissions,
    commands_service_accounts,
    commands_status,
    commands_tokens,
)
from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.registry import Access, Args, CommandRegistry, JsonObject


async def server_ping(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    """Answer without touching the store: proves the control socket is served."""
    return {"pong": True, "version": __version__}


def build_registry() -> CommandRegistry:
    registry = CommandRegistry()
    # Any authenticated caller may ping; health.credentials stays socket-only.
    registry.register(
        "server.ping", server_ping, (), "check that the server answers", access=Access(None)
    )
    commands_directory.register(registry)
    commands_service_accounts.register(registry)
    commands_tokens.register(registry)
    commands_health.register(registry)
    commands_permissions.register(registry)
    commands_audit.register(registry)
    commands_status.register(registry)
    return registry
