"""Seeing what the server does: the access log, Prometheus metrics, expiry warnings.

``records`` is the only part the wire layer (``ldapsrv.ldap``) imports: plain
values and the ``Observer`` protocol, no I/O. Everything else is wired by
``service.py``.
"""
