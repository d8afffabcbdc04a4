"""Test helpers shared by the apps' test suites (fake upstream servers)."""
