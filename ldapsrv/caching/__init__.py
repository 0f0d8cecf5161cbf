"""In-memory answers that stay correct across servers sharing one database.

Every cached answer carries the change counters (``store/changes.py``) read
before it was computed, and is served only after reading them again and finding
them unchanged: a write committed by any server, any worker process or the
admin command bumps them in the same transaction, so nothing it changed is
ever answered from memory afterwards.
"""
