"""The config contract: one typed schema per config group (src.config.data, model, optimizer, trainer, and the
decoding's in src.models.decoding), each key's default and rule written once beside its field, and the commands'
whole configs (src.config.schema)."""
