"""Integration tests: real server, key-holder and client processes over mTLS."""
