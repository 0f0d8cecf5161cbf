"""End-to-end tests: a real ``ldapsrv serve`` process driven by real LDAP clients."""
