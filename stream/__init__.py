"""Stream evaluation: the pure evaluation core, runners (replay, embedded, faust) and writers."""
