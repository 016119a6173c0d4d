"""The local stack: the dev servers (broker, ClickHouse endpoint, schema registry) and the process
supervisor. Imports the shared base (`infra.base`), never the CLI."""
