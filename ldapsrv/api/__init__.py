"""The management API: the control socket's commands as JSON over HTTPS.

Layout, from the wire inwards:

- ``resource``: the Twisted Web resource (routing, body limit, the pipeline
  of one call) and ``make_site``; ``service.py`` puts it on an SSL port.
- ``auth``: reading ``Authorization`` and checking an ``api`` token (blocking).
- ``access``: the gate that checks a command's ``Access`` rule (blocking).
- ``limits``: in-memory request-rate limits per address and per account.
- ``errors``: stable error codes, HTTP statuses and the JSON error body.
- ``openapi``: the OpenAPI description, generated from the command registry.

No command is implemented here: every call goes through
``CommandRegistry.dispatch``, the same function the control socket uses.
"""
