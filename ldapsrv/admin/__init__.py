"""The admin plane: the control socket, its command registry, client and CLI.

Layout, from the wire inwards:

- ``cli``: ``ldapsrv user|group|service-account|token ...`` argv -> one call
  -> human or JSON output; ``ldapsrv health`` (``ldapsrv.health``) is a whole
  check built on the ``health.credentials`` call.
- ``client``: blocking newline-delimited-JSON client (no Twisted).
- ``server``: puts the control socket on disk safely (mode at bind, one
  server per path, stale files) and serves ``protocol``.
- ``protocol``: the wire format, request ordering, and the single mapping of
  failures to error kinds (``errors``).
- ``registry`` + ``commands*``: name -> handler with a declared argument
  schema; handlers get an ``AdminContext`` (ports to the store and the thread
  pool, config) and the kernel-verified ``Caller``.

The management API (``ldapsrv.api``) serves the same registry over HTTPS:
each command declares the management permission an API caller needs
(``registry.Access``), and both channels run commands through
``CommandRegistry.dispatch``.

Command modules: ``commands_directory`` (people, groups),
``commands_service_accounts``, ``commands_tokens`` and ``commands_health``;
``issuing`` holds what the token commands share (expiry arguments, new token
values, audit events, the internal-account rule). Later issues (permissions,
status) add their modules to ``commands.build_registry``, rows to
``cli._COMMANDS`` and ports to ``AdminContext``.
"""
