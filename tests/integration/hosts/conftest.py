"""The hosts tests use the session's stand-in VMs from :mod:`tests.integration.hostlab`."""
