"""Readers and writers for the hosts' formats; the only place they are met."""
