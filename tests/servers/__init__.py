"""Local servers the tests run: real processes and receivers on 127.0.0.1."""
