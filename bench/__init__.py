"""ldapsrv's benchmark against OpenLDAP's slapd (``python -m bench``; see bench/results/README.md).

Not part of the installed ``ldapsrv`` package: it drives a server from the outside,
through real sockets, with its own load generator.
"""
