"""Moving a directory in and out: LDIF and CSV import, LDIF export."""
