"""The management API's gate: does the caller hold what the command asks for?

A command's ``Access`` rule (declared with it in the registry) names one
management permission; a self-service rule names a narrower one that suffices
when the call acts on the caller's own account (``rotate_own_tokens``). The
caller holds a permission directly or through a group, like the search
permissions. Blocking (SQL): run ``check`` in the thread pool.
"""

from __future__ import annotations

from ldapsrv.admin.context import AdminContext
from ldapsrv.admin.errors import UNAVAILABLE, AdminError
from ldapsrv.admin.registry import Args, Command
from ldapsrv.api.auth import Principal
from ldapsrv.api.errors import PERMISSION_DENIED


class PermissionDenied(AdminError):
    """The caller lacks the management permission; the message names it."""

    def __init__(self, message: str) -> None:
        super().__init__(PERMISSION_DENIED, message)


def check_access(ctx: AdminContext, principal: Principal, command: Command, args: Args) -> None:
    """Raise PermissionDenied unless ``principal`` may run ``command`` with ``args``."""
    access = command.access
    if access is None:  # the API never routes such a command; refuse all the same
        raise PermissionDenied(f"{command.name} is available on the control socket only")
    if access.permission is None:
        return
    if ctx.permissions is None:
        raise AdminError(UNAVAILABLE, "this server was started without access control wired in")
    held = ctx.permissions.effective_permissions(principal.account).management
    if access.permission in held:
        return
    if access.own is not None and access.owner is not None and access.own in held:
        owner = access.owner(ctx, args)
        if owner is not None and owner.casefold() == principal.account.casefold():
            return
        raise PermissionDenied(
            f"{command.name} needs permission {access.permission.value}; "
            f"{access.own.value} covers only the tokens of account {principal.account!r}"
        )
    raise PermissionDenied(
        f"{command.name} needs permission {access.permission.value}, which account "
        f"{principal.account!r} does not hold (directly or through a group)"
    )
