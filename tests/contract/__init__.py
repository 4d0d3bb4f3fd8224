"""One suite of topic API tests that every engine must pass."""
