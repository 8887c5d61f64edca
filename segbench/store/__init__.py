"""The results store: schema, database access, provenance and recording."""
