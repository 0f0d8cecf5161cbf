"""ldapsrv: an LDAP directory server for users, groups and service accounts."""

__version__ = "0.1.0"
