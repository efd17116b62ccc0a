"""Host plumbing every stage uses: the one subprocess runner, atomic writes, paths, TOML and profile
loading, progress, error kinds."""
