"""health.credentials: what ``ldapsrv health`` needs to bind as the server's own account.

The health check proves the path a real client takes (TCP, bind with a token,
search), so it binds as the internal service account ``ldapsrv-health`` with
a real app-password token. The server creates that account and token at
start-up and always keeps the token encrypted (whatever ``tokens.viewable``
says), so this command can hand it to a caller of the control socket, who is
already trusted with everything the socket can do. The value is not logged;
the call is not audited either, because monitoring polls it every few minutes
and the trail would drown in it.
"""

from __future__ import annotations

from ipaddress import ip_address

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import UNAVAILABLE, AdminError
from ldapsrv.admin.registry import Args, CommandRegistry, JsonObject
from ldapsrv.admin.render import user_dn
from ldapsrv.auth.internal import HEALTH_ACCOUNT, HEALTH_TOKEN
from ldapsrv.auth.vault import VaultError
from ldapsrv.config import Config, HostPort
from ldapsrv.directory.records import AccountKind
from ldapsrv.errors import NotFound

_WILDCARDS = {"", "0.0.0.0", "::"}


def _loopback_host(listen: HostPort) -> str:
    """Where to dial a listener: a wildcard address means "every interface", so
    loopback reaches it; a specific address is the only one that does."""
    host = listen.host
    if host in _WILDCARDS:
        host = "::1" if host == "::" else "127.0.0.1"
    try:
        is_v6 = ip_address(host).version == 6
    except ValueError:  # a host name
        is_v6 = False
    return f"[{host}]" if is_v6 else host


def ldap_endpoint(config: Config) -> tuple[str, str | None]:
    """The URL the health check dials and the CA file to trust for it.

    Plain LDAP on loopback when it is on (nothing to verify); otherwise
    LDAPS, trusting the configured certificate or the development CA.
    """
    if config.listen is not None:
        return f"ldap://{_loopback_host(config.listen)}:{config.listen.port}", None
    assert config.ldaps_listen is not None, "the config requires one listener"
    listen = config.ldaps_listen
    ca_file = config.tls_cert or config.data_dir / "tls" / "ca.pem"
    # Absolute: the health check runs from another working directory than the server.
    return f"ldaps://{_loopback_host(listen)}:{listen.port}", str(ca_file.resolve())


async def health_credentials(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    def read() -> str:
        try:
            token = ctx.tokens.get_token(HEALTH_TOKEN)
        except NotFound:
            token = None
        if (
            token is None
            or token.account_kind is not AccountKind.INTERNAL_SERVICE_ACCOUNT
            or token.account_name != HEALTH_ACCOUNT
        ):
            raise AdminError(
                UNAVAILABLE,
                f"the health check's token {HEALTH_TOKEN!r} of the internal account "
                f"{HEALTH_ACCOUNT!r} is missing; the server makes it at start-up, "
                "so restart it",
            )
        if token.encrypted_value is None or ctx.vault is None:
            raise AdminError(
                UNAVAILABLE,
                f"the server keeps no readable copy of the health check's token "
                f"{HEALTH_TOKEN!r}; restart the server to make a new one",
            )
        try:
            return ctx.vault.decrypt(token.encrypted_value, token.lookup_id)
        except VaultError:
            raise AdminError(
                UNAVAILABLE,
                f"the health check's token {HEALTH_TOKEN!r} cannot be decrypted with the "
                "server's token key (tokens.key_file replaced?); restart the server to "
                "make a new one",
            ) from None

    value = await ctx.blocking.run(read)
    url, ca_file = ldap_endpoint(ctx.config)
    return {
        "account": HEALTH_ACCOUNT,
        "bind_dn": user_dn(HEALTH_ACCOUNT, ctx.config.base_dn),
        "token": value,
        "base_dn": ctx.config.base_dn,
        "ldap_url": url,
        "ca_file": ca_file,
    }


def register(registry: CommandRegistry) -> None:
    """Add health.credentials to ``registry``."""
    registry.register(
        "health.credentials",
        health_credentials,
        (),
        "bind DN, token and LDAP URL of the health check's internal account",
    )
