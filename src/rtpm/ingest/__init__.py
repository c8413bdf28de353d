"""The write path: decode -> validate -> WriteBuffer (group commit) -> storage -> publish."""
